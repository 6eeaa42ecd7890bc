"""Two things a clinic computer gets wrong that are not the key's fault, each told plainly: its clock is off
(the broker refuses requests signed at the wrong time), or another referral-clinic already uses the folder."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from clinic_folder import Clinic
from referral_clinic import broker_client, folder_lock
from referral_clinic.cli import main


def clock_off_by(monkeypatch: pytest.MonkeyPatch, off: timedelta) -> None:
    monkeypatch.setattr(broker_client, "local_clock", lambda: datetime.now(UTC) + off)


@pytest.mark.parametrize(
    ("off", "said"), [(timedelta(minutes=7), "7 minutes fast"), (-timedelta(minutes=7), "7 minutes slow")]
)
def test_a_clock_seven_minutes_off_is_told_as_such_not_as_an_unverified_key(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], off: timedelta, said: str
) -> None:
    clinic.serve()
    with monkeypatch.context() as patched:
        clock_off_by(patched, off)
        assert clinic.pull() == 1
    err = capsys.readouterr().err
    assert f"this computer's clock is {said}" in err
    assert "automatic time" in err and "Traceback" not in err
    assert "fingerprint" not in err and "not be verified" not in err  # the wrong advice it used to give
    assert clinic.broker.unsigned_or_bad == 1 and clinic.broker.acknowledged == []
    assert clinic.pull() == 0  # the clock set right: the same pull goes through
    assert len(clinic.broker.acknowledged) == 1


def test_a_clock_a_little_slow_is_no_problem(clinic: Clinic, monkeypatch: pytest.MonkeyPatch) -> None:
    clinic.serve()
    clock_off_by(monkeypatch, -timedelta(minutes=2))  # within what the broker accepts
    assert clinic.pull() == 0


def test_a_refusal_with_the_clock_right_still_gives_the_fingerprint_advice(
    clinic: Clinic, capsys: pytest.CaptureFixture[str]
) -> None:
    clinic.broker.answer_status = 403
    assert clinic.pull() == 1
    err = capsys.readouterr().err
    assert "ask the broker to verify fingerprint" in err and "clock" not in err


@pytest.fixture
def held_by_another_process(clinic: Clinic) -> Iterator[subprocess.Popen[str]]:
    """Another referral-clinic holding the folder's lock, in a process of its own."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "\n".join(
                [
                    "import sys",
                    "from pathlib import Path",
                    "from referral_clinic import folder_lock",
                    f"with folder_lock.hold(Path({str(clinic.dir)!r})):",
                    "    print('held', flush=True)",
                    "    sys.stdin.readline()",
                ]
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    yield holder
    holder.kill()
    holder.wait(timeout=10)


def test_a_pull_while_another_process_holds_the_folder_says_so_in_one_line_and_touches_nothing(
    clinic: Clinic, held_by_another_process: subprocess.Popen[str], capsys: pytest.CaptureFixture[str]
) -> None:
    clinic.serve()
    assert clinic.pull() == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"another referral-clinic is using {clinic.dir}" in err
    assert clinic.broker.requests == []

    held_by_another_process.kill()  # however it ends, the OS lets go of its lock
    held_by_another_process.wait(timeout=10)
    assert clinic.pull() == 0
    assert len(clinic.broker.acknowledged) == 1


def test_a_second_watch_on_the_same_folder_is_told_and_ends_before_asking_anything(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_passphrase(*args: object, **kwargs: object) -> str:
        raise AssertionError("asked for the passphrase")

    monkeypatch.setattr("referral_clinic.cli.read_passphrase", no_passphrase)
    with folder_lock.hold_for_watching(clinic.dir):  # the first watch, or the desk
        code = main(["watch", "--dir", str(clinic.dir), "--out", str(clinic.out)], transport=clinic.broker.transport)
    assert code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a `watch` or the desk already pulls for this folder" in err
    assert clinic.broker.requests == []
