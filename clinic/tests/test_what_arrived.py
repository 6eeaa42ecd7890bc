"""`pull` and `watch` say what arrived: a line a referral (its reference and when, in local time) and a plain
summary, with nothing a shared front-desk screen should not show; `--json` stays one machine-readable object."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest

from broker_stand_in import CANARY_NAME, CANARY_NEED
from clinic_folder import Clinic
from referral_clinic import watch
from referral_clinic.cli import main
from referral_protocol.notice import NoticeKind
from test_notices import notice_for, serve_notice

SHOWN_NOWHERE = (CANARY_NAME, CANARY_NEED, "kari@example.no", "41234567", "physiotherapy", "Kari Rettet")


@pytest.fixture
def in_oslo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This computer's time zone is Norway's (where tzset exists: not on Windows)."""
    if not hasattr(time, "tzset"):
        pytest.skip("the time zone cannot be set for this process here")
    monkeypatch.setenv("TZ", "Europe/Oslo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def received_at(clinic: Clinic, reference: str) -> datetime:
    document = msgspec.json.decode((clinic.out / f"{reference}.json").read_bytes())
    return datetime.fromisoformat(document["received_at"])


def test_pull_prints_a_line_a_referral_in_local_time_and_a_plain_summary(
    clinic: Clinic, in_oslo: None, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = clinic.serve(), clinic.serve()
    assert clinic.pull() == 0
    serve_notice(clinic, notice_for(first, NoticeKind.CORRECTION))
    serve_notice(clinic, notice_for(second, NoticeKind.WITHDRAWAL))
    out_before = capsys.readouterr().out
    assert clinic.pull() == 0
    out = capsys.readouterr().out

    lines = out_before.splitlines()
    for payload in (first, second):
        at = received_at(clinic, payload.reference)
        assert at.utcoffset() is not None and at.utcoffset().total_seconds() == 0  # the file keeps UTC
        shown = f"{at.astimezone(ZoneInfo('Europe/Oslo')):%Y-%m-%d %H:%M}"  # 04:47 for a file's 03:47Z in winter
        assert shown != f"{at:%Y-%m-%d %H:%M}"
        assert f"{shown}  {payload.reference}  new referral" in lines
    assert "2 new referrals, 0 corrections, 0 withdrawals, 0 erasures" in lines
    assert any(line.endswith(f"{first.reference}  correction") for line in out.splitlines())
    assert any(line.endswith(f"{second.reference}  withdrawal") for line in out.splitlines())
    assert "0 new referrals, 1 correction, 1 withdrawal, 0 erasures" in out.splitlines()
    for private in SHOWN_NOWHERE:
        assert private not in out_before + out


def test_an_empty_pull_says_nothing_arrived(clinic: Clinic, capsys: pytest.CaptureFixture[str]) -> None:
    assert clinic.pull() == 0
    assert capsys.readouterr().out.splitlines()[0] == "0 new referrals, 0 corrections, 0 withdrawals, 0 erasures"


def test_pull_json_stays_one_object_and_lists_what_arrived(clinic: Clinic, capsys: pytest.CaptureFixture[str]) -> None:
    payload = clinic.serve()
    assert clinic.pull("--json") == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    data = json.loads(out)
    assert data["received"] == [
        {
            "reference": payload.reference,
            "kind": "referral",
            "received_at": received_at(clinic, payload.reference).isoformat(),
        }
    ]


def test_watch_prints_a_line_a_referral_as_it_arrives(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = clinic.serve()
    real_loop = watch.loop

    def one_turn(cycle: Callable[[watch.Stopper], Any], **how: Any) -> int:
        def once(stopper: watch.Stopper) -> Any:
            report = cycle(stopper)
            stopper.event.set()
            return report

        return real_loop(once, **how)

    monkeypatch.setattr(watch, "loop", one_turn)
    argv = ["watch", "--dir", str(clinic.dir), "--out", str(clinic.out)]
    assert main(argv, transport=clinic.broker.transport) == 0
    out = capsys.readouterr().out
    assert any(line.endswith(f"{payload.reference}  new referral") for line in out.splitlines())
    assert "1 new referral, 0 corrections, 0 withdrawals, 0 erasures" in out.splitlines()
    for private in SHOWN_NOWHERE:
        assert private not in out
