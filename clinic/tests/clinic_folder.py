"""A clinic folder made by `referral-clinic init`, a broker stand-in that serves it, and their fixtures."""

from __future__ import annotations

import portable_simulation

if portable_simulation.wanted():  # before anything imports the clinic package
    portable_simulation.install()

import sys
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from broker_stand_in import BrokerStandIn, referral_payload, sealed
from referral_clinic.cli import main
from referral_protocol.clinic_identity import ClinicSecrets
from referral_protocol.encoding import format_public_key
from referral_protocol.envelope import BrokerSigner
from referral_protocol.keyfile import unlock
from referral_protocol.referral import ReferralPayload

PASSPHRASE = "correct horse battery staple"
SLUG = "fjord-fysio"
BROKER_URL = "https://broker.test"
#: Windows keeps no POSIX file modes (the user's profile folder's ACL protects the clinic folder there).
POSIX_MODES = sys.platform != "win32"


@dataclass
class Clinic:
    dir: Path
    out: Path
    secrets: ClinicSecrets
    broker_signer: BrokerSigner
    broker: BrokerStandIn
    init_output: str

    def pull(self, *extra: str) -> int:
        argv = ["pull", "--dir", str(self.dir), "--out", str(self.out), *extra]
        return main(argv, transport=self.broker.transport)

    def serve(self, payload: ReferralPayload | None = None, **sealing: object) -> ReferralPayload:
        """Put a referral for this clinic (or `payload`) in the broker's inbox, sealed to our key."""
        payload = payload or referral_payload(SLUG)
        sealing.setdefault("signer", self.broker_signer)
        sealing.setdefault("recipient_keys", [self.secrets.encryption_public(0)])
        self.broker.add(payload.delivery_id, sealed(payload, **sealing))  # type: ignore[arg-type]
        return payload

    def ledger_events(self) -> list[dict[str, object]]:
        path = self.dir / "ledger.jsonl"
        if not path.exists():
            return []
        return [msgspec.json.decode(line) for line in path.read_bytes().splitlines() if line.strip()]


@pytest.fixture
def clinic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFERRAL_CLINIC_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("REFERRAL_CLINIC_KDF_PROFILE", "interactive")


#: Made up, with a valid mod-11 check digit.
ORGANISATION_NUMBER = "987654325"
HER_ID = "8765432"


def init_argv(folder: Path, broker_key: str, *, slug: str = SLUG) -> list[str]:
    return [
        "init",
        "--dir", str(folder),
        "--broker", BROKER_URL,
        "--broker-key", broker_key,
        "--slug", slug,
        "--name", "Fjord Fysioterapi AS",
        "--organisation-number", ORGANISATION_NUMBER,
        "--her-id", HER_ID,
    ]  # fmt: skip


@pytest.fixture
def clinic(tmp_path: Path, clinic_env: None, capsys: pytest.CaptureFixture[str]) -> Clinic:
    signer = BrokerSigner.generate()
    folder = tmp_path / "clinic"
    assert main(init_argv(folder, format_public_key(signer.public_key))) == 0
    output = capsys.readouterr().out
    secrets_ = msgspec.json.decode(unlock((folder / "clinic.key").read_bytes(), PASSPHRASE), type=ClinicSecrets)
    return Clinic(
        dir=folder,
        out=tmp_path / "referrals",
        secrets=secrets_,
        broker_signer=signer,
        broker=BrokerStandIn(clinic_signing_key=secrets_.signing_public),
        init_output=output,
    )
