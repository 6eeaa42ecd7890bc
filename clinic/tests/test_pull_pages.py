"""A page is filed as a whole: a few waits for the disk a page, in the order that loses and duplicates nothing."""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from broker_stand_in import referral_payload
from clinic_folder import SLUG, Clinic
from referral_clinic import durable
from referral_protocol.enrolment import AckRequest


class DiskSteps:
    """Records each wait for the disk (by what it names), each file's taking its name (a rename of a named
    temp file, or the link of an unnamed one) and each acknowledgement."""

    def __init__(self, clinic: Clinic, monkeypatch: pytest.MonkeyPatch, *, syncfs: bool, unnamed: bool) -> None:
        self.clinic = clinic
        self.steps: list[str] = []
        real_fsync, real_replace, real_link, real_ack = os.fsync, os.replace, os.link, clinic.broker._ack

        def fsync(fd: int) -> None:
            self.steps.append(f"fsync {self.name(Path(os.readlink(f'/proc/self/fd/{fd}')))}")
            real_fsync(fd)

        def replace(src: str | Path, dst: str | Path) -> None:
            self.steps.append(f"name {self.name(Path(dst))}")
            real_replace(src, dst)

        def link(src: str | Path, dst: str | Path, **how: Any) -> None:
            self.steps.append(f"name {self.name(Path(dst))}")
            real_link(src, dst, **how)

        monkeypatch.setattr(os, "link", link)
        if unnamed:
            assert durable._unnamed_room(clinic.dir) > 0, "this machine's file system has unnamed files (O_TMPFILE)"
        else:
            monkeypatch.setattr(durable, "_unnamed_room", lambda folder: 0)

        def ack(request: AckRequest) -> httpx.Response:
            self.steps.append(f"ack {len(request.delivery_ids)}")
            return real_ack(request)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr(clinic.broker, "_ack", ack)
        if syncfs:
            real_syncfs = durable._syncfs()
            assert real_syncfs is not None, "this machine's kernel has syncfs with error reports (Linux 5.8+)"

            def recording_syncfs(fd: int) -> int:
                self.steps.append("syncfs")
                return real_syncfs(fd)

            monkeypatch.setattr(durable, "_syncfs", lambda: recording_syncfs)
        else:
            monkeypatch.setattr(durable, "_syncfs", lambda: None)

    def name(self, path: Path) -> str:
        if path == self.clinic.out.resolve():
            return "out/"
        if path.name.startswith(durable.TEMP_PREFIX) or path.name.endswith(" (deleted)"):  # named, or unnamed
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


@pytest.mark.parametrize("unnamed", [True, False], ids=["unnamed files", "named temp files"])
def test_a_page_waits_for_the_disk_four_times_and_is_acknowledged_last(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch, unnamed: bool
) -> None:
    pulled_before(clinic)
    for _ in range(5):
        clinic.serve()
    disk = DiskSteps(clinic, monkeypatch, syncfs=True, unnamed=unnamed)
    assert clinic.pull() == 0
    assert disk.of_the_page() == [
        "fsync ledger.jsonl",  # the five "writing" lines, before any file takes its name
        "syncfs",  # the five files' data, at once
        *["name referral"] * 5,
        "fsync out/",  # the five names
        "fsync ledger.jsonl",  # then the five "written" lines: a "written" line on disk means a file on disk
        "ack 5",
    ]
    events = [e["event"] for e in clinic.ledger_events()][3:]
    assert events == ["writing"] * 5 + ["written"] * 5 + ["acknowledged"] * 5
    assert len(list(clinic.out.glob("*.json"))) == 6


@pytest.mark.parametrize("unnamed", [True, False], ids=["unnamed files", "named temp files"])
def test_without_syncfs_each_file_is_fsynced_before_any_takes_its_name(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch, unnamed: bool
) -> None:
    pulled_before(clinic)
    for _ in range(3):
        clinic.serve()
    disk = DiskSteps(clinic, monkeypatch, syncfs=False, unnamed=unnamed)
    assert clinic.pull() == 0
    assert disk.of_the_page() == [
        "fsync ledger.jsonl",
        *["fsync temp"] * 3,
        *["name referral"] * 3,
        "fsync out/",
        "fsync ledger.jsonl",
        "ack 3",
    ]


def failing(number: int) -> Callable[[int], int]:
    def syncfs(fd: int) -> int:
        ctypes.set_errno(number)
        return -1

    return syncfs


def test_a_page_whose_data_did_not_reach_the_disk_is_not_acknowledged_and_comes_again(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    payloads = [clinic.serve() for _ in range(3)]
    with monkeypatch.context() as patched:
        patched.setattr(durable, "_syncfs", lambda: failing(errno.EIO))
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

    def full(folder: Path, data: bytes, *, unnamed: bool) -> Path:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(durable, "_make_temp", full)
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
    real = durable._make_temp
    calls = 0

    def full_after_two(folder: Path, data: bytes, *, unnamed: bool) -> durable.Temp:
        nonlocal calls
        calls += 1
        if calls > 2:  # page 1 (two files) fits; page 2 does not
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(folder, data, unnamed=unnamed)

    with monkeypatch.context() as m:
        m.setattr(durable, "_make_temp", full_after_two)
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


def test_a_broker_without_next_is_read_page_by_page_after_each_acknowledgement(clinic: Clinic) -> None:
    for _ in range(3):
        clinic.serve()
    clinic.broker.reads_on = False
    assert clinic.pull("--limit", "2") == 0
    assert _steps(clinic) == ["GET inbox after=start", "POST ack", "GET inbox after=start", "POST ack"]
    assert len(clinic.broker.acknowledged) == 3


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
    assert durable._unnamed_room(clinic.out) > 0, "this machine's file system has unnamed files (O_TMPFILE)"
    theirs = clinic.out / f"{payload.reference}.json"
    real_syncfs = durable._syncfs()
    assert real_syncfs is not None

    def someone_writes_meanwhile(fd: int) -> int:
        theirs.write_text("not ours")  # after the tool looked, before the file takes its name
        return real_syncfs(fd)

    monkeypatch.setattr(durable, "_syncfs", lambda: someone_writes_meanwhile)
    assert clinic.pull() == 1
    assert "cannot write: File exists" in capsys.readouterr().err
    assert theirs.read_text() == "not ours"
    assert clinic.broker.acknowledged == []


def test_past_the_room_for_unnamed_files_a_page_goes_on_with_named_temp_files(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert durable._unnamed_room(clinic.dir) > 0, "this machine's file system has unnamed files (O_TMPFILE)"
    monkeypatch.setattr(durable, "UNNAMED_AT_ONCE", 2)
    named: list[str] = []
    real_link, real_replace = os.link, os.replace

    def link(src: str, dst: Path, **how: Any) -> None:
        named.append("link")
        real_link(src, dst, **how)

    def replace(src: Path, dst: Path) -> None:
        named.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(os, "replace", replace)
    payloads = [clinic.serve() for _ in range(5)]
    assert clinic.pull() == 0
    assert named[:5] == ["link", "link", "rename", "rename", "rename"]
    assert sorted(f.name for f in clinic.out.glob("*.json")) == sorted(f"{p.reference}.json" for p in payloads)
    assert [f for f in clinic.out.iterdir() if f.name.startswith(durable.TEMP_PREFIX)] == []
    assert sorted(clinic.broker.acknowledged) == sorted(p.delivery_id for p in payloads)


def test_without_unnamed_files_there_is_no_room_for_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert durable._unnamed_room(tmp_path) > 0
    monkeypatch.delattr(os, "O_TMPFILE")  # not Linux
    assert durable._unnamed_room(tmp_path) == 0
