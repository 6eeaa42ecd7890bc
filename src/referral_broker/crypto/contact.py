"""The broker's own secrets for contact data: AEAD for its copy, HMAC blind indexes for look-ups.

Each data key is one 32-byte secret outside the database; HKDF derives from it an AEAD key, a
blind-index key and its public key id. The vault holds the current key and, during a rotation, the
fallback keys it replaces (docs/decisions/0069): new ciphertext and indexes use the current key, every
readable key still opens and finds what was made under it.

Ciphertext names its key: `RBC2` + 8-byte key id + 12-byte nonce + AES-256-GCM, with the prefix, the
key id and the row it belongs to as associated data, so a ciphertext moved to another row does not
decrypt. The first format, `RBC1` + nonce + AES-256-GCM (no key id), is still read: each readable key
is tried, and the tag tells which one made it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from referral_protocol.errors import DomainError

_PREFIX_V1 = b"RBC1"
_PREFIX = b"RBC2"
KEY_ID_BYTES = 8
_NONCE = 12
DATA_SECRET_BYTES = 32
#: How many leading bytes of a current ciphertext name its key (`RBC2` + key id): what SQL compares.
NAMED_PREFIX_BYTES = len(_PREFIX) + KEY_ID_BYTES


class ContactDecryptionFailed(DomainError):
    """The contact copy is damaged, belongs to another row, or was made with another key."""


class UnknownDataKey(ContactDecryptionFailed):
    """The ciphertext names a data key this process does not hold (restart it with the current keys folder)."""


def _derive(secret: bytes, purpose: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=purpose).derive(secret)


class DataKey:
    """One data secret's derived keys. `id` is public: it names the key in ciphertext and file names."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) != DATA_SECRET_BYTES:
            raise ValueError("the data secret must be 32 bytes")
        self.id = _derive(secret, b"referral-broker data-key id v1", KEY_ID_BYTES)
        self._aead = AESGCM(_derive(secret, b"referral-broker contact-aead v1"))
        self._index_key = _derive(secret, b"referral-broker blind-index v1")

    @property
    def id_hex(self) -> str:
        return self.id.hex()

    def blind_index(self, kind: str, normalised_value: str) -> bytes:
        return hmac.new(self._index_key, kind.encode() + b"\x00" + normalised_value.encode(), hashlib.sha256).digest()

    def encrypt(self, plaintext: bytes, bound_to: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        head = _PREFIX + self.id
        return head + nonce + self._aead.encrypt(nonce, plaintext, head + bound_to)

    def open_named(self, ciphertext: bytes, bound_to: bytes) -> bytes:
        head = ciphertext[:NAMED_PREFIX_BYTES]
        nonce = ciphertext[NAMED_PREFIX_BYTES : NAMED_PREFIX_BYTES + _NONCE]
        return self._aead.decrypt(nonce, ciphertext[NAMED_PREFIX_BYTES + _NONCE :], head + bound_to)

    def open_v1(self, ciphertext: bytes, bound_to: bytes) -> bytes:
        nonce = ciphertext[len(_PREFIX_V1) : len(_PREFIX_V1) + _NONCE]
        return self._aead.decrypt(nonce, ciphertext[len(_PREFIX_V1) + _NONCE :], _PREFIX_V1 + bound_to)


class ContactVault:
    """The current data key and the fallbacks still readable. Writes use the current key only."""

    def __init__(self, secret: bytes, fallbacks: Iterable[bytes] = ()) -> None:
        self.current = DataKey(secret)
        readable = [self.current]
        for other in fallbacks:
            key = DataKey(other)
            if all(key.id != k.id for k in readable):
                readable.append(key)
        self.readable: tuple[DataKey, ...] = tuple(readable)

    @staticmethod
    def generate_secret() -> bytes:
        return os.urandom(DATA_SECRET_BYTES)

    @property
    def fallbacks(self) -> tuple[DataKey, ...]:
        return self.readable[1:]

    @property
    def current_prefix(self) -> bytes:
        """The leading bytes every ciphertext made under the current key starts with."""
        return _PREFIX + self.current.id

    def encrypt(self, plaintext: bytes, *, bound_to: bytes) -> bytes:
        return self.current.encrypt(plaintext, bound_to)

    def decrypt(self, ciphertext: bytes, *, bound_to: bytes) -> bytes:
        if ciphertext.startswith(_PREFIX):
            key_id = ciphertext[len(_PREFIX) : NAMED_PREFIX_BYTES]
            key = next((k for k in self.readable if k.id == key_id), None)
            if key is None:
                raise UnknownDataKey(f"contact copy made under data key {key_id.hex()}, which this process lacks")
            try:
                return key.open_named(ciphertext, bound_to)
            except InvalidTag:
                raise ContactDecryptionFailed("contact copy does not decrypt for this row") from None
        if ciphertext.startswith(_PREFIX_V1):
            for key in self.readable:
                try:
                    return key.open_v1(ciphertext, bound_to)
                except InvalidTag:
                    continue
            raise ContactDecryptionFailed("contact copy does not decrypt for this row with any readable key")
        raise ContactDecryptionFailed("unknown contact ciphertext version")

    def key_of(self, ciphertext: bytes) -> bytes | None:
        """The id of the key a ciphertext names, or None for the first format (which names none)."""
        return ciphertext[len(_PREFIX) : NAMED_PREFIX_BYTES] if ciphertext.startswith(_PREFIX) else None

    def blind_index(self, kind: str, normalised_value: str) -> bytes:
        """HMAC-SHA256 of a normalised e-mail or phone under the current key: what new rows store."""
        return self.current.blind_index(kind, normalised_value)

    def blind_indexes(self, kind: str, normalised_value: str) -> list[bytes]:
        """The value's blind index under every readable key, current first: what look-ups search for."""
        return [k.blind_index(kind, normalised_value) for k in self.readable]
