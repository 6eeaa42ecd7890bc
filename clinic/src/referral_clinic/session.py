"""An unlocked clinic folder: its configuration, its secrets, and a client that signs as it."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from referral_clinic import broker_pins
from referral_clinic.broker_client import BrokerClient
from referral_clinic.envelope_check import ClinicKeys
from referral_clinic.keystore import ClinicConfig, ClinicDir
from referral_protocol.clinic_identity import ClinicSecrets


@dataclass(frozen=True)
class Session:
    clinic: ClinicDir
    config: ClinicConfig
    secrets: ClinicSecrets

    def client(self, transport: httpx.BaseTransport | None = None) -> BrokerClient:
        return BrokerClient(
            self.config.broker_url,
            signing_seed=self.secrets.signing_seed,
            signing_public=self.secrets.signing_public,
            transport=transport,
        )

    @property
    def keys(self) -> ClinicKeys:
        return ClinicKeys(
            slug=self.config.slug,
            broker_key=self.config.broker_public_key,
            private_keys=list(self.secrets.encryption_secrets),
            extra_broker_keys=broker_pins.extra_keys(self.clinic.path),
            folder=self.clinic.path,
        )


def unlock(folder: Path, passphrase: str) -> Session:
    clinic = ClinicDir(folder)
    config = clinic.load_config()
    return Session(clinic, config, clinic.unlock(passphrase, config))


def shown(text: str) -> str:
    """A broker-supplied id made safe to print: no terminal control characters, bounded length."""
    cleaned = "".join(c if c.isprintable() else "?" for c in text)
    return cleaned if len(cleaned) <= 80 else cleaned[:77] + "..."


def say(line: str) -> None:
    print(f"referral-clinic: {line}", file=sys.stderr)
