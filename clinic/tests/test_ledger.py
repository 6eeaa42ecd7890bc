"""The clinic's ledger: a crash mid-line loses nothing recorded, and damage is reported, not guessed past."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinic_folder import Clinic
from referral_clinic.ledger import FileRecord, Ledger, LedgerDamaged


def test_ledger_lines_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(path)
    record = FileRecord("d1", "RB-AAAAA-BBBBB", tmp_path / "RB-AAAAA-BBBBB.json")
    ledger.record_writing([record])
    ledger.record_written([record])
    ledger.record_acknowledged(["d1"])
    again = Ledger(path)
    assert again.written_reference("d1") == "RB-AAAAA-BBBBB"
    assert again.delivery_of("RB-AAAAA-BBBBB") == "d1"
    assert again.is_acknowledged("d1")
    assert path.stat().st_mode & 0o077 == 0


def test_a_torn_last_line_is_ignored_and_the_next_line_starts_fresh(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    Ledger(path).record_written([FileRecord("d1", "RB-AAAAA-BBBBB", tmp_path / "a.json")])
    with path.open("ab") as f:
        f.write(b'{"event":"written","deliv')  # the power went out here
    ledger = Ledger(path)
    assert ledger.written_reference("d1") == "RB-AAAAA-BBBBB"
    ledger.record_acknowledged(["d1"])
    assert Ledger(path).is_acknowledged("d1")


def test_a_damaged_ledger_stops_the_pull_with_exit_2(clinic: Clinic, capsys: pytest.CaptureFixture[str]) -> None:
    clinic.serve()
    (clinic.dir / "ledger.jsonl").write_bytes(b"not json\n{}\n")
    with pytest.raises(LedgerDamaged):
        Ledger(clinic.dir / "ledger.jsonl")
    assert clinic.pull() == 2
    err = capsys.readouterr().err
    assert "line 1 cannot be read" in err and "Traceback" not in err
    assert clinic.broker.acknowledged == []


def test_a_deleted_file_leaves_its_delivery_known_so_it_is_never_written_again(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(path)
    referral = FileRecord("d1", "RB-AAAAA-BBBBB", tmp_path / "RB-AAAAA-BBBBB.json")
    notice = FileRecord("n1", "RB-AAAAA-BBBBB", tmp_path / "RB-AAAAA-BBBBB.withdrawal-n1.json", notice="withdrawal")
    ledger.record_written([referral, notice])
    ledger.record_acknowledged(["d1", "n1"])
    assert sorted(r.delivery_id for r in ledger.records_of("RB-AAAAA-BBBBB")) == ["d1", "n1"]
    ledger.record_deleted(ledger.records_of("RB-AAAAA-BBBBB"))
    again = Ledger(path)
    assert again.is_deleted("RB-AAAAA-BBBBB") and again.records_of("RB-AAAAA-BBBBB") == []
    assert again.files() == {}
    assert again.written_reference("d1") == "RB-AAAAA-BBBBB" and again.is_acknowledged("d1")
    assert again.delivery_of("RB-AAAAA-BBBBB") == "d1"  # the reference is not free for another delivery
