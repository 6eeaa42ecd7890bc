"""A page is filed as a whole: a few waits for the disk a page, in the order that loses and duplicates nothing."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from broker_stand_in import referral_payload
from clinic_folder import SLUG, Clinic
from referral_clinic import durable
from referral_protocol.enrolment import AckRequest


class DiskSteps:
    """Records each wait for the disk (by what it names), each file's taking its name (a hard link of a
    durable temp file) and each acknowledgement."""

    def __init__(self, clinic: Clinic, monkeypatch: pytest.MonkeyPatch) -> None:
        self.clinic = clinic
        self.steps: list[str] = []
        self._names: dict[int, Path] = {}
        real_open, real_fsync, real_link, real_ack = os.open, durable.fsync, os.link, clinic.broker._ack
        real_mkstemp = durable.tempfile.mkstemp

        def opened(path: Any, flags: int, mode: int = 0o777, **how: Any) -> int:
            fd = real_open(path, flags, mode, **how)
            self._names[fd] = Path(path)
            return fd

        def mkstemp(**how: Any) -> tuple[int, str]:
            fd, name = real_mkstemp(**how)
            self._names[fd] = Path(name)
            return fd, name

        def fsync(fd: int) -> None:
            self.steps.append(f"fsync {self.name(self._names[fd])}")
            real_fsync(fd)

        def link(src: str | Path, dst: str | Path, **how: Any) -> None:
            self.steps.append(f"name {self.name(Path(dst))}")
            real_link(src, dst, **how)

        def ack(request: AckRequest) -> httpx.Response:
            self.steps.append(f"ack {len(request.delivery_ids)}")
            return real_ack(request)

        monkeypatch.setattr(os, "open", opened)
        monkeypatch.setattr(durable.tempfile, "mkstemp", mkstemp)
        monkeypatch.setattr(durable, "fsync", fsync)  # fsync(2), or F_FULLFSYNC on macOS
        monkeypatch.setattr(os, "link", link)
        monkeypatch.setattr(clinic.broker, "_ack", ack)

    def name(self, path: Path) -> str:
        path = path.resolve()
        if path == self.clinic.out.resolve():
            return "out/"
        if path.name.startswith(durable.TEMP_PREFIX):
            return "temp"
        if path.parent == self.clinic.out.resolve():
            return "referral"
        return path.name

    def of_the_page(self) -> list[str]:
        """The steps up to the page's acknowledgement (the clinic folder's last-pull record comes after)."""
        return self.steps[: next(i for i, s in enumerate(self.steps) if s.startswith("ack")) + 1]


def pulled_before(clinic: Clinic) -> None:
    """One referral pulled already: the ledger and the folder exist (creating them is one fsync more)."""
    clinic.serve()
    assert clinic.pull() == 0


@pytest.mark.skipif(sys.platform == "win32", reason="Windows fsyncs no folder")
def test_each_file_is_durable_before_any_takes_its_name_and_the_page_is_acknowledged_last(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    pulled_before(clinic)
    for _ in range(3):
        clinic.serve()
    disk = DiskSteps(clinic, monkeypatch)
    assert clinic.pull() == 0
    steps = disk.of_the_page()
    named_from = steps.index("name referral")
    # Before any file takes its name: the three "writing" lines, and each file's data (the writer thread
    # fsyncs each file as it writes it, so the two may come in either order).
    assert sorted(steps[:named_from]) == sorted(["fsync ledger.jsonl", *["fsync temp"] * 3])
    assert steps[named_from:] == [
        *["name referral"] * 3,  # linked: never over a file that has the name
        "fsync out/",  # the three names
        "fsync ledger.jsonl",  # then the "written" lines: a "written" line on disk means a file on disk
        "ack 3",
    ]
    events = [e["event"] for e in clinic.ledger_events()][3:]
    assert events == ["writing"] * 3 + ["written"] * 3 + ["acknowledged"] * 3
    assert len(list(clinic.out.glob("*.json"))) == 4
    assert [f for f in clinic.out.iterdir() if f.name.startswith(durable.TEMP_PREFIX)] == []


def test_a_page_whose_data_did_not_reach_the_disk_is_not_acknowledged_and_comes_again(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    payloads = [clinic.serve() for _ in range(3)]
    real_fsync = durable.fsync
    with monkeypatch.context() as patched:
        calls = 0

        def fsync(fd: int) -> None:
            nonlocal calls
            calls += 1
            if calls == 3:  # of the "writing" lines and the three files (in either order), the third fails
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            real_fsync(fd)

        patched.setattr(durable, "fsync", fsync)
        assert clinic.pull() == 1
    err = capsys.readouterr().err
    assert "cannot write: Input/output error" in err and "Traceback" not in err
    assert clinic.broker.acknowledged == []
    assert list(clinic.out.iterdir()) == []  # no referral under its name, and no temp file left behind
    assert [e["event"] for e in clinic.ledger_events()] == ["writing"] * 3

    assert clinic.pull() == 0
    assert "pulled 3, written 3, acknowledged 3" in capsys.readouterr().out
    assert sorted(clinic.broker.acknowledged) == sorted(p.delivery_id for p in payloads)
    assert sorted(p.name for p in clinic.out.iterdir()) == sorted(f"{p.reference}.json" for p in payloads)


def test_a_second_delivery_of_a_reference_on_the_same_page_is_refused(
    clinic: Clinic, capsys: pytest.CaptureFixture[str]
) -> None:
    first = clinic.serve(referral_payload(SLUG, reference="RB-AAAAA-BBBBB"))
    second = clinic.serve(referral_payload(SLUG, reference="RB-AAAAA-BBBBB"))
    assert clinic.pull() == 1
    captured = capsys.readouterr()
    assert "written 1, acknowledged 1, already had 0, refused 1" in captured.out
    assert "reference RB-AAAAA-BBBBB was already written for another delivery" in captured.err
    assert clinic.broker.acknowledged == [first.delivery_id]
    assert second.delivery_id in clinic.broker.inbox  # left waiting, for an operator to look at


def test_a_folder_that_cannot_be_written_acknowledges_nothing_new(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clinic.serve()
    clinic.out.mkdir()

    def full(folder: Path, data: bytes) -> Path:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(durable, "write_temp", full)
    assert clinic.pull() == 1
    assert "cannot write: No space left on device" in capsys.readouterr().err
    assert clinic.broker.acknowledged == []
    assert list(clinic.out.iterdir()) == []


def test_a_second_delivery_of_a_reference_on_a_later_page_is_refused(
    clinic: Clinic, capsys: pytest.CaptureFixture[str]
) -> None:
    first = clinic.serve(referral_payload(SLUG, reference="RB-CCCCC-DDDDD"))
    clinic.serve()
    second = clinic.serve(referral_payload(SLUG, reference="RB-CCCCC-DDDDD"))  # on page 2
    assert clinic.pull("--limit", "2") == 1
    assert "reference RB-CCCCC-DDDDD was already written for another delivery" in capsys.readouterr().err
    assert first.delivery_id in clinic.broker.acknowledged and second.delivery_id not in clinic.broker.acknowledged
    assert len(list(clinic.out.glob("*.json"))) == 2


def test_a_disk_that_fails_on_one_page_files_no_later_page_and_the_next_pull_takes_them(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    payloads = [clinic.serve() for _ in range(6)]
    clinic.out.mkdir()
    real = durable.write_temp
    calls = 0

    def full_after_two(folder: Path, data: bytes) -> Path:
        nonlocal calls
        calls += 1
        if calls > 2:  # page 1 (two files) fits; page 2 does not
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(folder, data)

    with monkeypatch.context() as m:
        m.setattr(durable, "write_temp", full_after_two)
        assert clinic.pull("--limit", "2") == 1
    err = capsys.readouterr().err
    assert "cannot write: No space left on device" in err
    assert clinic.broker.acknowledged == [p.delivery_id for p in payloads[:2]]  # page 1 only
    assert len(list(clinic.out.glob("*.json"))) == 2
    assert [f for f in clinic.out.iterdir() if f.name.startswith(durable.TEMP_PREFIX)] == []  # nothing half-made

    assert clinic.pull("--limit", "2") == 0  # room again: the rest is filed and acknowledged
    assert sorted(clinic.broker.acknowledged) == sorted(p.delivery_id for p in payloads)
    assert len(list(clinic.out.glob("*.json"))) == 6


def _steps(clinic: Clinic) -> list[str]:
    return [
        f"{r.method} {r.url.path.rsplit('/', 1)[-1]}"
        + (f" after={r.url.params['after']}" if "after" in r.url.params else "")
        for r in clinic.broker.requests
    ]


def test_the_next_page_is_fetched_before_this_one_is_acknowledged(clinic: Clinic) -> None:
    payloads = [clinic.serve() for _ in range(5)]
    assert clinic.pull("--limit", "2") == 0
    cursor = "r.{}." + "0" * 32
    assert _steps(clinic) == [
        "GET inbox after=start",
        "GET inbox after=" + cursor.format(2),  # page 2 asked for while page 1 is filed
        "POST ack",  # page 1, once filed
        "GET inbox after=" + cursor.format(4),
        "POST ack",
        "POST ack",
    ]
    assert clinic.broker.ack_calls == [[p.delivery_id for p in payloads[i : i + 2]] for i in (0, 2, 4)]
    assert sorted(clinic.broker.acknowledged) == sorted(p.delivery_id for p in payloads)


def test_an_acknowledgement_that_fails_stops_the_reading_and_the_next_pull_acknowledges_both_pages(
    clinic: Clinic, capsys: pytest.CaptureFixture[str]
) -> None:
    payloads = [clinic.serve() for _ in range(6)]
    clinic.broker.ack_failures.append(httpx.ConnectError("connection reset"))
    assert clinic.pull("--limit", "2") == 1
    out, err = capsys.readouterr()
    # Page 2 was fetched and filed while page 1's acknowledgement was under way; page 3 is not read.
    assert "pulled 4, written 4, acknowledged 0" in out
    assert "cannot reach the broker" in err and "Traceback" not in err
    assert clinic.broker.acknowledged == []
    assert len(list(clinic.out.glob("*.json"))) == 4

    assert clinic.pull("--limit", "2") == 0
    assert "pulled 6, written 2, acknowledged 6, already had 4" in capsys.readouterr().out
    assert sorted(clinic.broker.acknowledged) == sorted(p.delivery_id for p in payloads)


def test_a_broker_that_says_more_but_serves_nothing_new_ends_the_pull(
    clinic: Clinic, capsys: pytest.CaptureFixture[str]
) -> None:
    clinic.serve()
    clinic.broker.always_more = True  # and every page after the first is empty
    assert clinic.pull() == 1
    assert "served nothing new" in capsys.readouterr().err
    assert len(clinic.broker.acknowledged) == 1


def test_a_file_that_takes_a_referrals_name_meanwhile_is_never_replaced(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = clinic.serve()
    clinic.out.mkdir()
    theirs = clinic.out / f"{payload.reference}.json"
    real_write_temp = durable.write_temp

    def someone_writes_meanwhile(folder: Path, data: bytes) -> Path:
        theirs.write_text("not ours")  # after the tool looked, before the file takes its name
        return real_write_temp(folder, data)

    monkeypatch.setattr(durable, "write_temp", someone_writes_meanwhile)
    assert clinic.pull() == 1
    assert "cannot write: File exists" in capsys.readouterr().err
    assert theirs.read_text() == "not ours"
    assert clinic.broker.acknowledged == []


def test_without_hard_links_the_name_is_claimed_and_still_never_replaces_anothers_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "this file system has no hard links")

    monkeypatch.setattr(os, "link", no_links)  # FAT, exFAT, some network shares
    durable.write_file(tmp_path / "ours.json", b"referral", replace=False)
    assert (tmp_path / "ours.json").read_bytes() == b"referral"
    (tmp_path / "theirs.json").write_bytes(b"not ours")
    with pytest.raises(FileExistsError):
        durable.write_file(tmp_path / "theirs.json", b"referral", replace=False)
    assert (tmp_path / "theirs.json").read_bytes() == b"not ours"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ours.json", "theirs.json"]  # no temp file left


def test_an_empty_claim_left_by_a_crash_is_written_again_by_the_next_pull(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = clinic.serve()
    real_replace = os.replace

    def crash_after_claiming(src: str | Path, dst: str | Path) -> None:
        if Path(dst).parent == clinic.out.resolve():
            raise OSError(errno.EIO, os.strerror(errno.EIO))  # the power goes after the claim, before the rename
        real_replace(src, dst)

    def no_links(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "this file system has no hard links")

    with monkeypatch.context() as patched:
        patched.setattr(os, "link", no_links)
        patched.setattr(os, "replace", crash_after_claiming)
        assert clinic.pull() == 1
    path = clinic.out / f"{payload.reference}.json"
    assert path.read_bytes() == b""  # the claim
    assert clinic.broker.acknowledged == []
    capsys.readouterr()

    assert clinic.pull() == 0
    assert b"delivery_id" in path.read_bytes()
    assert clinic.broker.acknowledged == [payload.delivery_id]
