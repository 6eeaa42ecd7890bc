"""The stalled pull cured, `pull --json`, the passphrase change, and the watch loop's back-off."""

from __future__ import annotations

import json
import stat

import msgspec
import pytest

from clinic_folder import POSIX_MODES, Clinic
from referral_clinic import watch
from referral_clinic.broker_client import BrokerUnavailable
from referral_clinic.cli import main
from referral_clinic.pull_report import PullReport
from referral_protocol.clinic_identity import ClinicSecrets
from referral_protocol.enrolment import KeyStatus
from referral_protocol.envelope import BrokerSigner
from referral_protocol.keyfile import unlock


def test_a_full_page_of_bad_envelopes_no_longer_stalls_the_valid_ones_behind(
    clinic: Clinic, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = [clinic.serve(outer_clinic="another-clinic") for _ in range(3)]
    good = [clinic.serve() for _ in range(2)]
    assert clinic.pull("--limit", "3") == 1  # refusals make the run incomplete, but it went on
    err = capsys.readouterr().err
    assert err.count("reported to the broker") == 3
    assert sorted(clinic.broker.refused) == sorted(p.delivery_id for p in bad)
    assert set(clinic.broker.refused.values()) == {"wrong_addressee"}
    assert sorted(clinic.broker.acknowledged) == sorted(p.delivery_id for p in good)
    assert clinic.broker.inbox == {}


def test_an_envelope_signed_by_another_broker_key_is_skipped_not_reported(
    clinic: Clinic, capsys: pytest.CaptureFixture[str]
) -> None:
    """If the broker changed its key, the pin is out of date, not the envelope: never throw referrals away."""
    clinic.serve(signer=BrokerSigner.generate())
    assert clinic.pull() == 1
    assert "then run `referral-clinic pin-broker-key" in capsys.readouterr().err
    assert clinic.broker.refused == {} and len(clinic.broker.inbox) == 1


def test_an_envelope_for_a_key_held_elsewhere_is_left_for_that_machine(
    clinic: Clinic, capsys: pytest.CaptureFixture[str]
) -> None:
    other_machine = ClinicSecrets.generate("fjord-fysio")
    theirs = clinic.serve(recipient_keys=[other_machine.encryption_public(0)])
    ours = clinic.serve()
    assert clinic.pull("--limit", "1") == 1  # the page after it is read all the same
    err = capsys.readouterr().err
    assert "another machine of the clinic may hold one" in err
    assert clinic.broker.refused == {} and list(clinic.broker.inbox) == [theirs.delivery_id]
    assert clinic.broker.acknowledged == [ours.delivery_id]


def test_pull_json_is_one_machine_readable_object(clinic: Clinic, capsys: pytest.CaptureFixture[str]) -> None:
    payload = clinic.serve()
    assert clinic.pull("--json") == 0
    out = capsys.readouterr().out
    data = json.loads(out)
    assert data["written"] == 1 and data["acknowledged"] == 1 and data["complete"] is True
    assert data["references"] == [payload.reference]
    assert out.count("\n") == 1


def test_status_shows_keys_waiting_and_the_last_pull(clinic: Clinic, capsys: pytest.CaptureFixture[str]) -> None:
    key = clinic.secrets.encryption_key_ids[0]
    clinic.broker.key_states[key] = KeyStatus(key, "encryption", "active", 0)
    clinic.serve()
    assert clinic.pull() == 0
    clinic.serve()
    capsys.readouterr()
    assert main(["status", "--dir", str(clinic.dir)], transport=clinic.broker.transport) == 0
    out = capsys.readouterr().out
    assert f"encryption key {key}: active" in out
    assert "waiting in the inbox: 1" in out
    assert "last pull here: 20" in out and "pulled 1" in out
    assert main(["status", "--dir", str(clinic.dir), "--json"], transport=clinic.broker.transport) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["encryption_keys"] == [key] and data["broker_view"]["waiting"] == 1


def test_passphrase_change_relocks_the_key_file_0600(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    new = "a different long passphrase"
    monkeypatch.setenv("REFERRAL_CLINIC_NEW_PASSPHRASE", new)
    assert main(["passphrase", "--dir", str(clinic.dir)]) == 0
    key_file = clinic.dir / "clinic.key"
    assert not POSIX_MODES or stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert json.loads(key_file.read_bytes())["format"] == "referral-broker/keyfile/v1"
    same = msgspec.json.decode(unlock(key_file.read_bytes(), new), type=ClinicSecrets)
    assert same == clinic.secrets
    # the old one no longer opens it: a clear line, exit 2, no traceback, and the file unchanged
    before = key_file.read_bytes()
    assert clinic.pull() == 2
    err = capsys.readouterr().err
    assert "wrong passphrase" in err and "Traceback" not in err
    monkeypatch.setenv("REFERRAL_CLINIC_PASSPHRASE", "wrong but long enough")
    assert main(["passphrase", "--dir", str(clinic.dir)]) == 2
    assert key_file.read_bytes() == before
    monkeypatch.setenv("REFERRAL_CLINIC_PASSPHRASE", new)
    monkeypatch.setenv("REFERRAL_CLINIC_NEW_PASSPHRASE", "short")
    assert main(["passphrase", "--dir", str(clinic.dir)]) == 2
    assert "at least 12 characters" in capsys.readouterr().err
    assert key_file.read_bytes() == before


def test_the_only_key_is_never_destroyed(clinic: Clinic, capsys: pytest.CaptureFixture[str]) -> None:
    key = clinic.secrets.encryption_key_ids[0]
    argv = ["key", "destroy", "--dir", str(clinic.dir), "--key-id", key, "--yes", "--force"]
    assert main(argv, transport=clinic.broker.transport) == 2
    assert "only encryption key" in capsys.readouterr().err


def test_watch_backs_off_with_jitter_and_resets_after_success() -> None:
    waits = [watch.next_delay(n, interval=10, max_backoff=300, uniform=lambda a, b: b) for n in range(8)]
    assert waits == [11, 20, 40, 80, 160, 300, 300, 300]
    lows = [watch.next_delay(n, interval=10, max_backoff=300, uniform=lambda a, b: a) for n in range(1, 4)]
    assert lows == [10, 20, 40]  # equal jitter: never less than half the ceiling


def test_watch_loop_keeps_going_through_errors_and_stops_when_told() -> None:
    stopper = watch.Stopper()
    reports = [
        PullReport(broker_error=BrokerUnavailable("down")),
        None,  # the folder was busy
        PullReport(pulled=1, written=1, acknowledged=1),
    ]
    seen: list[PullReport | None] = []

    def cycle(s: watch.Stopper) -> PullReport | None:
        seen.append(reports[len(seen)])
        if len(seen) == len(reports):
            s.event.set()  # as a signal would
        return seen[-1]

    assert watch.loop(cycle, interval=0.01, max_backoff=0.02, stopper=stopper) == 0
    assert seen == reports
