"""The broker's keys on disk: the signing seed, the data secret, and `broker.pub` for clinics to pin.

Layout of the keys folder (see keys/README.md): `broker-signing.key` and `data.key` hold base64 secrets
(mode 0600; in production they are mounted secrets), `broker.pub` holds `ed25519:<base64>`. During a
data-key rotation `data-<key id>.key` files hold the fallback data keys (crypto/data_keys.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from referral_broker.crypto.contact import ContactVault
from referral_broker.crypto.data_keys import DATA_FILE, load_vault
from referral_broker.crypto.signing_keys import SigningKeyProblem, SigningKeyring
from referral_protocol.encoding import b64, format_public_key, unb64
from referral_protocol.envelope import BrokerSigner
from referral_protocol.keyfile import write_private

SIGNING_FILE = "broker-signing.key"
PUBLIC_FILE = "broker.pub"


class BrokerKeysMissing(Exception):
    """The keys folder lacks a key; the message says which and how to make it."""


class BrokerKeysUnusable(BrokerKeysMissing):
    """A key is there but must not be used; the message says why."""


@dataclass(frozen=True)
class BrokerKeys:
    signing: SigningKeyring
    vault: ContactVault

    @property
    def signer(self) -> BrokerSigner:
        """The active signing key, as the folder holds it now (see crypto/signing_keys.py)."""
        return self.signing.active


def init_keys(folder: Path) -> list[str]:
    """Create whichever broker keys are missing; never overwrite one. Returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    signing = folder / SIGNING_FILE
    if not signing.exists():
        write_private(signing, b64(BrokerSigner.generate().seed).encode() + b"\n")
        written.append(SIGNING_FILE)
    data = folder / DATA_FILE
    if not data.exists():
        write_private(data, b64(ContactVault.generate_secret()).encode() + b"\n")
        written.append(DATA_FILE)
    signer = BrokerSigner(unb64(signing.read_text()))
    public = folder / PUBLIC_FILE
    expected = format_public_key(signer.public_key)
    if not public.exists() or public.read_text().strip() != expected:
        public.write_text(expected + "\n")
        written.append(PUBLIC_FILE)
    return written


def load_keys(folder: Path) -> BrokerKeys:
    for name in (SIGNING_FILE, DATA_FILE):
        if not (folder / name).exists():
            raise BrokerKeysMissing(f"{folder / name} is missing; run `referral-broker keys init` first")
    try:
        signing = SigningKeyring(folder)
    except SigningKeyProblem as exc:
        raise BrokerKeysUnusable(str(exc)) from None
    return BrokerKeys(signing=signing, vault=load_vault(folder))
