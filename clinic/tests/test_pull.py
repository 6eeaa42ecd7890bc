"""`referral-clinic pull`: each referral written durably, recorded, and only then acknowledged."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import httpx
import msgspec
import pytest

from broker_stand_in import CANARY_NAME, CANARY_NEED
from clinic_folder import POSIX_MODES, Clinic
from referral_clinic import durable, referral_file
from referral_clinic.keystore import ClinicDir
from referral_protocol.clinic_identity import check_enrollment, fingerprint_of
from referral_protocol.enrolment import AckRequest


def test_pull_writes_each_referral_durably_and_acknowledges_it(
    clinic: Clinic, capsys: pytest.CaptureFixture[str]
) -> None:
    payloads = [clinic.serve() for _ in range(3)]
    assert clinic.pull("--limit", "2") == 0  # two pages
    out, err = capsys.readouterr()
    assert "pulled 3, written 3, acknowledged 3, already had 0, refused 0" in out
    assert err == ""
    assert sorted(clinic.broker.acknowledged) == sorted(p.delivery_id for p in payloads)
    assert clinic.broker.inbox == {}
    for payload in payloads:
        path = clinic.out / f"{payload.reference}.json"
        assert not POSIX_MODES or stat.S_IMODE(path.stat().st_mode) == 0o600
        written = msgspec.json.decode(path.read_bytes())
        assert written["reference"] == payload.reference
        assert written["delivery_id"] == payload.delivery_id
        assert written["submitted_at"] == "2026-11-20T09:30:00Z"
        assert written["patient"] == msgspec.to_builtins(payload.patient)
        assert written["need"] == {"category": "physiotherapy", "description": CANARY_NEED}
        assert written["consent"] == msgspec.to_builtins(payload.consent)
        assert "received_at" in written
        assert referral_file.read(path).patient == payload.patient  # the strict file type reads it back
    assert not list(clinic.out.glob(".*"))  # no temp files left behind
    # the ledger says written before acknowledged, for every delivery
    events = [(e["event"], e["delivery_id"]) for e in clinic.ledger_events()]
    for payload in payloads:
        assert events.index(("written", payload.delivery_id)) < events.index(("acknowledged", payload.delivery_id))


def test_every_request_is_signed_with_the_enrolled_key(clinic: Clinic) -> None:
    clinic.serve()
    assert clinic.pull() == 0
    assert len(clinic.broker.requests) == 2  # one page, one ack
    assert clinic.broker.unsigned_or_bad == 0
    enrolled = check_enrollment((clinic.dir / "enrollment.json").read_bytes())
    assert enrolled.signing_key == clinic.broker.clinic_signing_key
    for request in clinic.broker.requests:
        assert request.headers["user-agent"].startswith("referral-clinic/")


def test_patient_content_never_reaches_the_terminal(clinic: Clinic, capsys: pytest.CaptureFixture[str]) -> None:
    clinic.serve()
    clinic.serve(outer_clinic="another-clinic")  # refused, and its reason printed
    assert clinic.pull() == 1
    out, err = capsys.readouterr()
    for canary in (CANARY_NAME, CANARY_NEED, "kari@example.no"):
        assert canary not in out + err


def test_crash_after_write_before_ack_writes_no_duplicate_and_acks_on_next_pull(
    clinic: Clinic, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = clinic.serve()
    clinic.broker.ack_failures.append(httpx.ConnectError("connection reset"))
    assert clinic.pull() == 1
    out, err = capsys.readouterr()
    assert "written 1, acknowledged 0" in out
    assert "cannot reach the broker" in err and "Traceback" not in err
    path = clinic.out / f"{payload.reference}.json"
    first = path.read_bytes()
    assert clinic.broker.acknowledged == []

    assert clinic.pull() == 0
    out, _ = capsys.readouterr()
    assert "pulled 1, written 0, acknowledged 1, already had 1, refused 0" in out
    assert path.read_bytes() == first  # not written again
    assert [p.name for p in clinic.out.iterdir()] == [path.name]
    assert clinic.broker.acknowledged == [payload.delivery_id]


def test_ack_answered_with_server_error_is_retried_on_next_pull(
    clinic: Clinic, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = clinic.serve()
    clinic.broker.ack_failures.append(503)
    assert clinic.pull() == 1
    assert "HTTP 503" in capsys.readouterr().err
    assert clinic.pull() == 0
    assert clinic.broker.acknowledged == [payload.delivery_id]


def test_crash_between_rename_and_ledger_line_is_recovered_without_duplicate(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = clinic.serve()

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError(5, "Input/output error")

    with monkeypatch.context() as patched:
        patched.setattr("referral_clinic.ledger.Ledger.record_written", crash)
        assert clinic.pull() == 1
    assert "Input/output error" in capsys.readouterr().err
    assert clinic.broker.acknowledged == []
    path = clinic.out / f"{payload.reference}.json"
    first = path.read_bytes()

    assert clinic.pull() == 0
    assert "already had 1" in capsys.readouterr().out
    assert path.read_bytes() == first
    assert clinic.broker.acknowledged == [payload.delivery_id]


def test_replayed_envelope_is_skipped(clinic: Clinic, capsys: pytest.CaptureFixture[str]) -> None:
    payload = clinic.serve()
    envelope = clinic.broker.inbox[payload.delivery_id]
    assert clinic.pull() == 0
    path = clinic.out / f"{payload.reference}.json"
    first = path.read_bytes()
    capsys.readouterr()

    clinic.broker.add(payload.delivery_id, envelope)  # the same envelope served again
    assert clinic.pull() == 0
    assert "pulled 1, written 0, acknowledged 1, already had 1, refused 0" in capsys.readouterr().out
    assert path.read_bytes() == first
    assert clinic.broker.ack_calls == [[payload.delivery_id], [payload.delivery_id]]


def test_existing_file_unknown_to_the_ledger_is_not_overwritten(
    clinic: Clinic, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = clinic.serve()
    clinic.out.mkdir()
    path = clinic.out / f"{payload.reference}.json"
    path.write_text("the clinic's own file\n")
    assert clinic.pull() == 1
    err = capsys.readouterr().err
    assert f"refused delivery {payload.delivery_id}" in err and "refusing to overwrite" in err
    assert path.read_text() == "the clinic's own file\n"
    assert clinic.broker.acknowledged == []


def test_a_page_that_says_more_but_not_where_it_begins_ends_the_pull_after_filing_it(
    clinic: Clinic, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = clinic.serve()
    clinic.serve(outer_clinic="another-clinic")
    clinic.broker.always_more = True
    clinic.broker.reads_on = False  # pages without `next`: no broker was released like that
    assert clinic.pull() == 1
    out, err = capsys.readouterr()
    assert "not where it begins" in err and "Traceback" not in err
    assert "refused 1" in out
    assert clinic.broker.acknowledged == [payload.delivery_id]  # what it served is filed and acknowledged
    assert sorted(r.url.path.rsplit("/", 1)[-1] for r in clinic.broker.requests) == ["ack", "inbox", "refuse"]


def test_unverified_key_names_the_fingerprint_to_verify(clinic: Clinic, capsys: pytest.CaptureFixture[str]) -> None:
    clinic.broker.answer_status = 401
    assert clinic.pull() == 1
    err = capsys.readouterr().err
    fingerprint = fingerprint_of(check_enrollment((clinic.dir / "enrollment.json").read_bytes()))
    assert f"ask the broker to verify fingerprint {fingerprint}" in err
    assert "Traceback" not in err


def test_unreachable_broker_gives_one_clear_line(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    monkeypatch.setattr(clinic.broker, "handle", refuse)
    assert clinic.pull() == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "cannot reach the broker at https://broker.test" in err


def test_two_pulls_never_interleave(clinic: Clinic, capsys: pytest.CaptureFixture[str]) -> None:
    clinic.serve()
    with ClinicDir(clinic.dir).locked():
        assert clinic.pull() == 1
    assert "another referral-clinic is using" in capsys.readouterr().err
    assert clinic.broker.requests == []
    assert clinic.pull() == 0


def test_empty_inbox_pulls_nothing_and_succeeds(clinic: Clinic, capsys: pytest.CaptureFixture[str]) -> None:
    assert clinic.pull() == 0
    assert "pulled 0, written 0, acknowledged 0, already had 0, refused 0" in capsys.readouterr().out
    assert [r.method for r in clinic.broker.requests] == ["GET"]


def test_referral_moved_away_after_writing_is_not_written_again(
    clinic: Clinic, capsys: pytest.CaptureFixture[str]
) -> None:
    # A journal import may move files out of OUTDIR; the ledger, not the folder, says what was received.
    payload = clinic.serve()
    envelope = clinic.broker.inbox[payload.delivery_id]
    clinic.broker.ack_failures.append(503)
    assert clinic.pull() == 1
    (clinic.out / f"{payload.reference}.json").unlink()
    clinic.broker.add(payload.delivery_id, envelope)
    assert clinic.pull() == 0
    assert "written 0, acknowledged 1, already had 1" in capsys.readouterr().out
    assert list(clinic.out.iterdir()) == []


def test_delivery_the_broker_does_not_know_is_reported_not_acknowledged(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = clinic.serve()
    monkeypatch.setattr(clinic.broker, "acknowledged", [])
    original = clinic.broker._ack

    def forgetful(request: AckRequest) -> httpx.Response:
        clinic.broker.inbox.clear()  # e.g. the delivery expired at the broker meanwhile
        return original(request)

    monkeypatch.setattr(clinic.broker, "_ack", forgetful)
    assert clinic.pull() == 1
    err = capsys.readouterr().err
    assert f"not acknowledged: delivery {payload.delivery_id}" in err
    assert "does not know" in err
    assert (clinic.out / f"{payload.reference}.json").exists()


def test_temp_files_left_by_a_killed_pull_are_removed(clinic: Clinic) -> None:
    clinic.out.mkdir()
    stale = clinic.out / ".incoming-abc.tmp"
    stale.write_text("half a referral")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    fresh = clinic.out / ".incoming-def.tmp"  # perhaps another writer's, still at work
    fresh.write_text("in progress")
    assert clinic.pull() == 0
    assert not stale.exists()
    assert fresh.exists()


def test_a_page_is_acknowledged_only_after_its_folder_and_ledger_reach_the_disk(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The new names and "written" lines are fsync'd once per page, before the acknowledgement; when that
    fails, nothing is acknowledged, and the next pull recognises the files and acknowledges them."""
    payloads = [clinic.serve() for _ in range(3)]
    order: list[str] = []
    real_fsync_dir = durable.fsync_dir
    real_ack = clinic.broker._ack

    def failing_fsync_dir(folder: Path) -> None:
        order.append(f"fsync {folder.name}")
        if folder == clinic.out.resolve():
            raise OSError(5, "Input/output error")
        real_fsync_dir(folder)

    with monkeypatch.context() as patched:
        patched.setattr(durable, "fsync_dir", failing_fsync_dir)
        assert clinic.pull() == 1
    assert "not yet safely on disk" in capsys.readouterr().err
    assert clinic.broker.acknowledged == []
    assert order.count(f"fsync {clinic.out.name}") == 1  # once for the page, not once per referral

    def recording_ack(request: AckRequest) -> httpx.Response:
        order.append("ack")
        return real_ack(request)

    def recording_fsync_dir(folder: Path) -> None:
        order.append(f"fsync {folder.name}")
        real_fsync_dir(folder)

    order.clear()
    with monkeypatch.context() as patched:
        patched.setattr(durable, "fsync_dir", recording_fsync_dir)
        patched.setattr(clinic.broker, "_ack", recording_ack)
        assert clinic.pull() == 0
    assert "already had 3" in capsys.readouterr().out
    # (the clinic folder's own fsync after the pull, for its last-pull record, is not part of this)
    assert [step for step in order if step in (f"fsync {clinic.out.name}", "ack")] == [
        f"fsync {clinic.out.name}",
        "ack",
    ]
    assert sorted(clinic.broker.acknowledged) == sorted(p.delivery_id for p in payloads)
    assert len(list(clinic.out.glob("*.json"))) == 3
