"""Padding plaintext to size buckets, so a ciphertext's length does not tell how long the need was."""

from __future__ import annotations

from referral_protocol.errors import EnvelopeRejected

#: Bucket sizes in bytes; every sealed payload is exactly one of these long before sealing.
BUCKETS: tuple[int, ...] = (2048, 4096, 8192, 16384, 32768, 65536)
MAX_PLAINTEXT = BUCKETS[-1] - 1


def bucket_for(length: int) -> int:
    for size in BUCKETS:
        if length < size:  # room for the 0x80 marker
            return size
    raise ValueError(f"payload of {length} bytes exceeds the largest bucket ({BUCKETS[-1]})")


def pad(plaintext: bytes) -> bytes:
    """ISO/IEC 7816-4 padding (0x80 then zeros) up to the next bucket."""
    size = bucket_for(len(plaintext))
    return plaintext + b"\x80" + b"\x00" * (size - len(plaintext) - 1)


def unpad(padded: bytes) -> bytes:
    if len(padded) not in BUCKETS:
        raise EnvelopeRejected("padded payload has a length that is not a bucket size")
    end = padded.rstrip(b"\x00")
    if not end.endswith(b"\x80"):
        raise EnvelopeRejected("payload padding is damaged")
    return end[:-1]
