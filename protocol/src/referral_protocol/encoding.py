"""Key identifiers and fingerprints: the short names people and programs use for public keys."""

from __future__ import annotations

import base64
import hashlib


def key_id(public_key: bytes) -> str:
    """A stable, short identifier of a public key: 16 hex digits of its SHA-256."""
    return hashlib.sha256(public_key).hexdigest()[:16]


#: Key ids of the test keys published with the protocol's test vectors (docs/protocol/vectors/): their
#: secret halves are public, so they are refused wherever a key is taken into use — an enrolment, a key
#: request, a pinned broker key, the broker's own signing key.
PUBLISHED_TEST_KEY_IDS: frozenset[str] = frozenset(
    {"bcb4e1592b1a6cf2", "44541a2630ad2b09", "fdbed0b152061643", "78afafb85008389a"}
)
PUBLISHED_TEST_KEY = "a published test key of the protocol's test vectors, whose secret anyone can read"


def is_published_test_key(public_key: bytes) -> bool:
    return key_id(public_key) in PUBLISHED_TEST_KEY_IDS


def enrolment_fingerprint(slug: str, encryption_key: bytes, signing_key: bytes) -> str:
    """What an operator compares out of band: 160 bits of SHA-256 over the clinic's name and keys."""
    digest = hashlib.sha256(
        b"referral-broker enrolment v1\x00" + slug.encode() + b"\x00" + encryption_key + signing_key
    ).digest()[:20]
    text = base64.b32encode(digest).decode()  # 32 characters, no padding for 20 bytes
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))


def normalise_fingerprint(text: str) -> str:
    """Accept a fingerprint as people copy it: any case, with or without dashes and spaces."""
    cleaned = "".join(ch for ch in text.upper() if ch.isalnum())
    return "-".join(cleaned[i : i + 4] for i in range(0, len(cleaned), 4))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text.strip(), validate=True)


def format_public_key(public_key: bytes) -> str:
    return f"ed25519:{b64(public_key)}"


def parse_public_key(text: str) -> bytes:
    """Read `ed25519:<base64>` (the content of broker.pub)."""
    prefix, _, value = text.strip().partition(":")
    if prefix != "ed25519" or not value:
        raise ValueError("a broker key looks like 'ed25519:<base64>' (the content of broker.pub)")
    key = unb64(value)
    if len(key) != 32:
        raise ValueError("a broker key is 32 bytes")
    if is_published_test_key(key):
        raise ValueError(f"this broker key is {PUBLISHED_TEST_KEY}; pin the broker's real broker.pub")
    return key
