"""`referral-clinic init` and `fingerprint`: keys made safely, never overwritten, named by a fingerprint."""

from __future__ import annotations

import io
import stat
import sys
from pathlib import Path

import msgspec
import pytest

from clinic_folder import PASSPHRASE, POSIX_MODES, SLUG, Clinic, init_argv
from referral_clinic.cli import main
from referral_protocol.clinic_identity import ClinicSecrets, check_enrollment, fingerprint_of
from referral_protocol.encoding import format_public_key
from referral_protocol.envelope import BrokerSigner
from referral_protocol.keyfile import unlock


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_key_file_0600_and_refuses_to_overwrite(clinic: Clinic, capsys: pytest.CaptureFixture[str]) -> None:
    key_file = clinic.dir / "clinic.key"
    assert not POSIX_MODES or (_mode(clinic.dir), _mode(key_file)) == (0o700, 0o600)
    secrets_ = msgspec.json.decode(unlock(key_file.read_bytes(), PASSPHRASE), type=ClinicSecrets)
    enrollment = check_enrollment((clinic.dir / "enrollment.json").read_bytes())
    assert enrollment.slug == secrets_.slug == SLUG
    assert enrollment.signing_key == secrets_.signing_public
    assert enrollment.encryption_key == secrets_.encryption_public(0)
    config = msgspec.json.decode((clinic.dir / "config.json").read_bytes())
    assert config["broker_key"] == format_public_key(clinic.broker_signer.public_key)
    assert config["broker_url"] == "https://broker.test"
    assert config["slug"] == SLUG
    assert config["format"] == "referral-clinic/config/v1"

    before = key_file.read_bytes()
    again = main(init_argv(clinic.dir, format_public_key(BrokerSigner.generate().public_key)))
    err = capsys.readouterr().err
    assert again == 2
    assert "refusing to overwrite" in err
    assert "Traceback" not in err
    assert key_file.read_bytes() == before


def test_init_prints_fingerprint_and_next_step(clinic: Clinic) -> None:
    enrollment = check_enrollment((clinic.dir / "enrollment.json").read_bytes())
    fingerprint = fingerprint_of(enrollment)
    assert f"fingerprint: {fingerprint}" in clinic.init_output
    assert "send" in clinic.init_output and "over the phone" in clinic.init_output


def test_fingerprint_matches_enrollment(clinic: Clinic, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fingerprint", "--dir", str(clinic.dir)]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == fingerprint_of(check_enrollment((clinic.dir / "enrollment.json").read_bytes()))
    assert printed in clinic.init_output


def test_fingerprint_needs_no_passphrase(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("REFERRAL_CLINIC_PASSPHRASE")
    monkeypatch.setattr(sys, "stdin", io.StringIO())
    assert main(["fingerprint", "--dir", str(clinic.dir)]) == 0
    assert capsys.readouterr().out.strip() in clinic.init_output


def test_init_reads_broker_key_from_broker_pub_file(
    tmp_path: Path, clinic_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    signer = BrokerSigner.generate()
    broker_pub = tmp_path / "broker.pub"
    broker_pub.write_text(format_public_key(signer.public_key) + "\n")
    assert main(init_argv(tmp_path / "c", str(broker_pub))) == 0
    config = msgspec.json.decode((tmp_path / "c" / "config.json").read_bytes())
    assert config["broker_key"] == format_public_key(signer.public_key)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"slug": "Not A Slug"}, "not a valid slug"),
        ({"slug": "dash-last-"}, "not a valid slug"),
        ({"broker_key": "ed25519:bm90LWEta2V5"}, "broker key"),
        ({"broker_key": "/no/such/broker.pub"}, "cannot read the broker key"),
    ],
)
def test_init_refuses_bad_arguments_before_making_anything(
    tmp_path: Path,
    clinic_env: None,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, str],
    message: str,
) -> None:
    broker_key = change.get("broker_key", format_public_key(BrokerSigner.generate().public_key))
    argv = init_argv(tmp_path / "c", broker_key, slug=change.get("slug", SLUG))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "c").exists()


def test_init_refuses_a_short_passphrase(
    tmp_path: Path, clinic_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REFERRAL_CLINIC_PASSPHRASE", "short")
    assert main(init_argv(tmp_path / "c", format_public_key(BrokerSigner.generate().public_key))) == 2
    assert "at least 12 characters" in capsys.readouterr().err
    assert not (tmp_path / "c" / "clinic.key").exists()


def test_init_asks_twice_on_a_terminal_and_refuses_a_mismatch(
    tmp_path: Path, clinic_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("REFERRAL_CLINIC_PASSPHRASE")
    monkeypatch.setattr(sys, "stdin", _Terminal())
    answers = iter(["first passphrase here", "second passphrase here"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert main(init_argv(tmp_path / "c", format_public_key(BrokerSigner.generate().public_key))) == 2
    assert "differ" in capsys.readouterr().err
    assert not (tmp_path / "c" / "clinic.key").exists()


def test_init_on_a_terminal_asks_twice_and_locks_with_that_passphrase(
    tmp_path: Path, clinic_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("REFERRAL_CLINIC_PASSPHRASE")
    monkeypatch.setattr(sys, "stdin", _Terminal())
    prompts: list[str] = []

    def answer(prompt: str = "") -> str:
        prompts.append(prompt)
        return "typed on the terminal"

    monkeypatch.setattr("getpass.getpass", answer)
    assert main(init_argv(tmp_path / "c", format_public_key(BrokerSigner.generate().public_key))) == 0
    assert len(prompts) == 2
    unlock((tmp_path / "c" / "clinic.key").read_bytes(), "typed on the terminal")


def test_missing_passphrase_without_terminal_exits_2_with_one_line(
    tmp_path: Path, clinic_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("REFERRAL_CLINIC_PASSPHRASE")
    monkeypatch.setattr(sys, "stdin", io.StringIO())
    assert main(init_argv(tmp_path / "c", format_public_key(BrokerSigner.generate().public_key))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "REFERRAL_CLINIC_PASSPHRASE" in err


def test_unknown_kdf_profile_is_refused(
    tmp_path: Path, clinic_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REFERRAL_CLINIC_KDF_PROFILE", "fast")
    assert main(init_argv(tmp_path / "c", format_public_key(BrokerSigner.generate().public_key))) == 2
    assert "interactive, moderate, sensitive" in capsys.readouterr().err


def test_wrong_passphrase_gives_clear_message_and_exit_2(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clinic.serve()
    monkeypatch.setenv("REFERRAL_CLINIC_PASSPHRASE", "not the right passphrase")
    assert clinic.pull() == 2
    err = capsys.readouterr().err
    assert "wrong passphrase" in err
    assert "Traceback" not in err
    assert clinic.broker.requests == []  # nothing was fetched with keys we could not open


def test_pull_from_a_missing_folder_says_how_to_make_one(
    tmp_path: Path, clinic_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pull", "--dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "referral-clinic init" in err
    assert "Traceback" not in err


def test_init_warns_about_plain_http_to_another_machine(
    tmp_path: Path, clinic_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = init_argv(tmp_path / "c", format_public_key(BrokerSigner.generate().public_key))
    argv[argv.index("--broker") + 1] = "http://broker.example"
    assert main(argv) == 0
    assert "plain http" in capsys.readouterr().err
