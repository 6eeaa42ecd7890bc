"""Passphrase-protected key files (Argon2id + XSalsa20-Poly1305), written with mode 0600.

Format v1 (JSON): {"format", "kdf": "argon2id", "opslimit", "memlimit", "salt", "box"}. The KDF
parameters travel with the file, so a file made with stronger settings still opens.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import msgspec
from nacl import pwhash
from nacl.exceptions import CryptoError
from nacl.secret import SecretBox
from nacl.utils import random as random_bytes

from referral_protocol.errors import KeyFileError
from referral_protocol.validation import DECODE_ERRORS

KEYFILE_FORMAT = "referral-broker/keyfile/v1"
MIN_PASSPHRASE = 12

#: Argon2id strengths. "moderate" is the default for a clinic's keys; "interactive" serves tests and demos.
PROFILES: dict[str, tuple[int, int]] = {
    "interactive": (pwhash.argon2id.OPSLIMIT_INTERACTIVE, pwhash.argon2id.MEMLIMIT_INTERACTIVE),
    "moderate": (pwhash.argon2id.OPSLIMIT_MODERATE, pwhash.argon2id.MEMLIMIT_MODERATE),
    "sensitive": (pwhash.argon2id.OPSLIMIT_SENSITIVE, pwhash.argon2id.MEMLIMIT_SENSITIVE),
}


class _KeyFile(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    format: str
    kdf: str
    opslimit: int
    memlimit: int
    salt: bytes
    box: bytes


def _key(passphrase: str, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    return pwhash.argon2id.kdf(SecretBox.KEY_SIZE, passphrase.encode(), salt, opslimit=opslimit, memlimit=memlimit)


def lock(secret: bytes, passphrase: str, *, profile: str = "moderate") -> bytes:
    if len(passphrase) < MIN_PASSPHRASE:
        raise KeyFileError(f"the passphrase must be at least {MIN_PASSPHRASE} characters long")
    opslimit, memlimit = PROFILES[profile]
    salt = random_bytes(pwhash.argon2id.SALTBYTES)
    box = bytes(SecretBox(_key(passphrase, salt, opslimit, memlimit)).encrypt(secret))
    return msgspec.json.encode(
        _KeyFile(format=KEYFILE_FORMAT, kdf="argon2id", opslimit=opslimit, memlimit=memlimit, salt=salt, box=box)
    )


def unlock(data: bytes, passphrase: str) -> bytes:
    try:
        kf = msgspec.json.decode(data, type=_KeyFile)
    except DECODE_ERRORS:
        raise KeyFileError("the key file is damaged or not a referral-broker key file") from None
    if kf.format != KEYFILE_FORMAT or kf.kdf != "argon2id":
        raise KeyFileError(f"unsupported key file format {kf.format!r}")
    if not (1 <= kf.opslimit <= 64 and 8192 <= kf.memlimit <= 4 * 1024**3):
        raise KeyFileError("the key file asks for implausible key-derivation settings")
    try:
        return SecretBox(_key(passphrase, kf.salt, kf.opslimit, kf.memlimit)).decrypt(kf.box)
    except CryptoError:
        raise KeyFileError("wrong passphrase (or the key file is damaged)") from None


def write_private(path: Path, data: bytes, *, overwrite: bool = False) -> None:
    """Write `data` to `path` with mode 0600, atomically and durably; refuse to replace unless asked.

    The bytes go to a fresh temporary file first (mkstemp: unique name, O_EXCL, 0600). Without
    `overwrite` it is then hard-linked into place, which fails if the name exists — no window in
    which a check passes and another writer's key is replaced.
    """
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise FileExistsError(f"{path} exists; refusing to overwrite a key") from None
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
