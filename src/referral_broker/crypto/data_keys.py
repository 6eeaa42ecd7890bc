"""The data keys on disk: `data.key` is the current key, each `data-<key id>.key` a fallback still read.

A rotation (docs/decisions/0069) first copies the current key to its fallback name, then replaces
`data.key` with a new key; each file is written whole and renamed into place, so a crash at any point
leaves a folder that loads: at worst the old key twice (once under each name), which counts as no
rotation. Retiring removes the fallback files once nothing stored needs them (the caller checks that).
Flat file names, because a Kubernetes Secret or a compose secret folder has no sub-folders.
"""

from __future__ import annotations

import binascii
import os
import re
from dataclasses import dataclass
from pathlib import Path

from referral_broker.crypto.contact import ContactVault, DataKey
from referral_protocol.encoding import b64, unb64
from referral_protocol.keyfile import write_private

DATA_FILE = "data.key"
_FALLBACK = re.compile(r"^data-([0-9a-f]{16})\.key$")


class DataKeyError(Exception):
    """A data key file is missing, unreadable or not what its name says; the message says which and what to do."""


class RotationUnfinished(DataKeyError):
    """A rotation was started before and its old key is still readable: finish (reencrypt, retire) first."""


def fallback_name(key_id_hex: str) -> str:
    return f"data-{key_id_hex}.key"


def _read_secret(path: Path) -> bytes:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DataKeyError(f"{path} is missing; run `referral-broker keys init` first") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataKeyError(f"{path} cannot be read ({exc.__class__.__name__}); check the file and its mode") from None
    try:
        secret = unb64(text)
    except (binascii.Error, ValueError):
        raise DataKeyError(f"{path} is not a data key: expected one line of base64") from None
    if len(secret) != 32:
        raise DataKeyError(f"{path} is not a data key: it holds {len(secret)} bytes, a data key has 32")
    return secret


def _fallback_secrets(folder: Path) -> list[tuple[Path, bytes]]:
    found = []
    for path in sorted(folder.glob("data-*.key")):
        match = _FALLBACK.match(path.name)
        if match is None:
            raise DataKeyError(f"{path} is not named like a fallback data key (data-<16 hex digits>.key)")
        secret = _read_secret(path)
        actual = DataKey(secret).id_hex
        if actual != match.group(1):
            raise DataKeyError(f"{path} holds data key {actual}, not {match.group(1)}: a wrong or renamed file")
        found.append((path, secret))
    return found


def load_vault(folder: Path) -> ContactVault:
    """The current key and every fallback in the folder; DataKeyError names a missing or wrong file."""
    current = _read_secret(folder / DATA_FILE)
    return ContactVault(current, [secret for _, secret in _fallback_secrets(folder)])


@dataclass(frozen=True)
class Rotation:
    old_key_id: str
    new_key_id: str


def _check_writable(folder: Path) -> None:
    if not os.access(folder, os.W_OK):
        raise DataKeyError(
            f"{folder} is not writable (a mounted secret?): copy it to a writable folder, run the command with "
            "REFERRAL_BROKER_KEYS_DIR pointing there, then update the secret from that folder"
        )


def add_key(folder: Path, new_secret: bytes | None = None) -> Rotation:
    """Make a new current data key, keeping the old one as a fallback. Refused while a fallback is left."""
    vault = load_vault(folder)
    if vault.fallbacks:
        raise RotationUnfinished(
            f"a data-key rotation is unfinished: key {', '.join(k.id_hex for k in vault.fallbacks)} is still "
            "readable as a fallback. Run `referral-broker keys reencrypt`, then `referral-broker keys retire-data`, "
            "before rotating again"
        )
    _check_writable(folder)
    old = vault.current
    new_secret = new_secret or ContactVault.generate_secret()
    keep = folder / fallback_name(old.id_hex)
    if not keep.exists():  # a crash after this step leaves the same key under both names: no rotation
        write_private(keep, (folder / DATA_FILE).read_bytes())
    write_private(folder / DATA_FILE, b64(new_secret).encode() + b"\n", overwrite=True)
    return Rotation(old_key_id=old.id_hex, new_key_id=DataKey(new_secret).id_hex)


def remove_fallbacks(folder: Path) -> list[str]:
    """Delete every fallback file (the caller has made sure nothing stored needs them); returns their key ids."""
    vault = load_vault(folder)
    _check_writable(folder)
    removed = []
    for path, secret in _fallback_secrets(folder):
        key_id = DataKey(secret).id_hex
        if key_id != vault.current.id_hex:
            removed.append(key_id)
        path.unlink()
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return removed
