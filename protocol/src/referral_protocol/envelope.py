"""Sealed, signed envelopes: the only form in which a referral leaves the broker's memory.

Format v1 (JSON): {"format", "signer", "body", "signature"} where `body` is the JSON of EnvelopeBody
and `signature` is the broker's Ed25519 signature over a domain tag and those exact body bytes, so no
canonical re-encoding is needed to verify. Inside the body each recipient key has its own sealed box of
the same padded payload; the payload names its clinic and delivery again, so a box for clinic B
re-sealed to clinic A's key is refused on opening.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import msgspec
from nacl.exceptions import BadSignatureError, CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox
from nacl.signing import SigningKey, VerifyKey

from referral_protocol.encoding import key_id
from referral_protocol.errors import EnvelopeRejected, EnvelopeSignedByAnotherKey
from referral_protocol.padding import pad, unpad
from referral_protocol.validation import DECODE_ERRORS

ENVELOPE_FORMAT = "referral-broker/envelope/v1"
_SIGNATURE_DOMAIN = b"referral-broker envelope v1\x00"


class Recipient(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    key_id: str
    box: bytes


class EnvelopeBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    kind: str  # "referral"; notices will use their own kinds
    delivery_id: str
    reference: str
    clinic: str
    issued_at: datetime
    recipients: list[Recipient]


class SignedEnvelope(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    format: str
    signer: str
    body: bytes
    signature: bytes


_signed_decoder = msgspec.json.Decoder(SignedEnvelope)
_body_decoder = msgspec.json.Decoder(EnvelopeBody)
_encoder = msgspec.json.Encoder()


class BrokerSigner:
    """The broker's Ed25519 key, used to sign envelopes and receipts."""

    def __init__(self, seed: bytes) -> None:
        self._key = SigningKey(seed)
        self.public_key = bytes(self._key.verify_key)
        self.key_id = key_id(self.public_key)

    @classmethod
    def generate(cls) -> BrokerSigner:
        return cls(bytes(SigningKey.generate()))

    @property
    def seed(self) -> bytes:
        return bytes(self._key)

    def sign(self, domain: bytes, message: bytes) -> bytes:
        return self._key.sign(domain + message).signature


@dataclass(frozen=True)
class SealedEnvelope:
    """An envelope ready to store: its bytes and the hash the dispatch receipt records."""

    data: bytes
    body: EnvelopeBody


def seal(
    payload: bytes,
    *,
    kind: str,
    delivery_id: str,
    reference: str,
    clinic: str,
    issued_at: datetime,
    recipient_keys: list[bytes],
    signer: BrokerSigner,
) -> SealedEnvelope:
    """Pad `payload`, seal it to every recipient key, and sign the whole."""
    if not recipient_keys:
        raise ValueError("an envelope needs at least one recipient key")
    padded = pad(payload)
    body = EnvelopeBody(
        kind=kind,
        delivery_id=delivery_id,
        reference=reference,
        clinic=clinic,
        issued_at=issued_at,
        recipients=[Recipient(key_id(k), SealedBox(PublicKey(k)).encrypt(padded)) for k in recipient_keys],
    )
    body_bytes = _encoder.encode(body)
    signed = SignedEnvelope(
        format=ENVELOPE_FORMAT,
        signer=signer.key_id,
        body=body_bytes,
        signature=signer.sign(_SIGNATURE_DOMAIN, body_bytes),
    )
    return SealedEnvelope(data=_encoder.encode(signed), body=body)


def signer_of(data: bytes) -> str:
    """The key id an envelope names as its signer (nothing is verified)."""
    try:
        return _signed_decoder.decode(data).signer
    except DECODE_ERRORS as exc:
        raise EnvelopeRejected(f"envelope is malformed: {exc}") from None


def resign(data: bytes, signer: BrokerSigner) -> bytes:
    """The same envelope signed by `signer`: the body's bytes (and so its sealed boxes) are unchanged,
    only `signer` and `signature` are new. Used when a broker key retires while envelopes still wait."""
    try:
        signed = _signed_decoder.decode(data)
    except DECODE_ERRORS as exc:
        raise EnvelopeRejected(f"envelope is malformed: {exc}") from None
    again = SignedEnvelope(
        format=signed.format,
        signer=signer.key_id,
        body=signed.body,
        signature=signer.sign(_SIGNATURE_DOMAIN, signed.body),
    )
    return _encoder.encode(again)


def verify(data: bytes, broker_key: bytes) -> EnvelopeBody:
    """Check the broker's signature and return the body; anything else is refused.

    A well-formed envelope from another signer raises `EnvelopeSignedByAnotherKey`, so a clinic can
    tell an out-of-date pin from a damaged envelope."""
    return verify_pinned(data, [broker_key])[0]


def verify_pinned(data: bytes, broker_keys: Iterable[bytes]) -> tuple[EnvelopeBody, bytes]:
    """`verify` against whichever of the pinned broker keys signed it (during a key change a clinic pins
    two); returns the body and the key that signed it. `EnvelopeSignedByAnotherKey.signer` names the
    key id of a signer that is none of them."""
    try:
        signed = _signed_decoder.decode(data)
    except DECODE_ERRORS as exc:
        raise EnvelopeRejected(f"envelope is malformed: {exc}") from None
    pinned = {key_id(k): k for k in broker_keys}
    broker_key = pinned.get(signed.signer)
    if broker_key is None:
        raise EnvelopeSignedByAnotherKey(
            "envelope is signed by a key other than the pinned broker key", signer=signed.signer
        )
    if _encoder.encode(signed) != data:
        # Only the canonical encoding is accepted, so no two byte strings pass as the same envelope
        # (non-canonical base64 padding bits would otherwise decode to identical bytes).
        raise EnvelopeRejected("envelope is not in canonical form")
    if signed.format != ENVELOPE_FORMAT:
        raise EnvelopeRejected(f"unknown envelope format {signed.format!r}")
    try:
        VerifyKey(broker_key).verify(_SIGNATURE_DOMAIN + signed.body, signed.signature)
    except (BadSignatureError, ValueError, TypeError):
        raise EnvelopeRejected("envelope signature does not verify against the pinned broker key") from None
    try:
        return _body_decoder.decode(signed.body), broker_key
    except DECODE_ERRORS as exc:
        raise EnvelopeRejected(f"signed envelope body is malformed: {exc}") from None


class OpeningKeys:
    """A clinic's private encryption keys, each ready to open sealed boxes, found by key id.

    Deriving a key's public half (its id) is a scalar multiplication: done once here, not per envelope."""

    def __init__(self, private_keys: Iterable[bytes]) -> None:
        self._boxes: dict[str, SealedBox[PrivateKey]] = {}
        for secret in private_keys:
            private = PrivateKey(secret)
            self._boxes.setdefault(key_id(bytes(private.public_key)), SealedBox(private))

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._boxes)

    def unseal(self, body: EnvelopeBody) -> bytes:
        """The padded payload of a verified body, opened with whichever of these keys it was sealed to."""
        sealed = {r.key_id: r.box for r in body.recipients}
        for kid, opener in self._boxes.items():
            box = sealed.get(kid)
            if box is None:
                continue
            try:
                return unpad(opener.decrypt(box))
            except CryptoError:
                raise EnvelopeRejected("sealed box does not open with this clinic's key") from None
        raise EnvelopeRejected("envelope is not sealed to any key this clinic holds")


def open_envelope(
    data: bytes, *, broker_key: bytes, clinic: str, private_keys: list[bytes] | OpeningKeys
) -> tuple[EnvelopeBody, bytes]:
    """Verify, check the addressee, and unseal with whichever of `private_keys` it was sealed to."""
    body = verify(data, broker_key)
    if body.clinic != clinic:
        raise EnvelopeRejected(f"envelope is addressed to {body.clinic!r}, not to this clinic")
    keys = private_keys if isinstance(private_keys, OpeningKeys) else OpeningKeys(private_keys)
    return body, keys.unseal(body)
