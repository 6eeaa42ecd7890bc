"""The broker's own secrets for contact data: AEAD for its copy, HMAC blind indexes for look-ups.

Both keys are derived with HKDF from one 32-byte secret that lives outside the database. Ciphertext
is versioned (`RBC1` + nonce + AES-256-GCM) and bound by associated data to the row it belongs to,
so a ciphertext moved to another row does not decrypt.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from referral_protocol.errors import DomainError

_PREFIX = b"RBC1"
_NONCE = 12
DATA_SECRET_BYTES = 32


class ContactDecryptionFailed(DomainError):
    """The contact copy is damaged, belongs to another row, or was made with another key."""


def _derive(secret: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret)


class ContactVault:
    def __init__(self, secret: bytes) -> None:
        if len(secret) != DATA_SECRET_BYTES:
            raise ValueError("the data secret must be 32 bytes")
        self._aead = AESGCM(_derive(secret, b"referral-broker contact-aead v1"))
        self._index_key = _derive(secret, b"referral-broker blind-index v1")

    @staticmethod
    def generate_secret() -> bytes:
        return os.urandom(DATA_SECRET_BYTES)

    def encrypt(self, plaintext: bytes, *, bound_to: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return _PREFIX + nonce + self._aead.encrypt(nonce, plaintext, _PREFIX + bound_to)

    def decrypt(self, ciphertext: bytes, *, bound_to: bytes) -> bytes:
        if not ciphertext.startswith(_PREFIX):
            raise ContactDecryptionFailed("unknown contact ciphertext version")
        nonce = ciphertext[len(_PREFIX) : len(_PREFIX) + _NONCE]
        try:
            return self._aead.decrypt(nonce, ciphertext[len(_PREFIX) + _NONCE :], _PREFIX + bound_to)
        except InvalidTag:
            raise ContactDecryptionFailed("contact copy does not decrypt for this row") from None

    def blind_index(self, kind: str, normalised_value: str) -> bytes:
        """HMAC-SHA256 of a normalised e-mail or phone: equal values match, nothing else is learnt."""
        return hmac.new(self._index_key, kind.encode() + b"\x00" + normalised_value.encode(), hashlib.sha256).digest()
