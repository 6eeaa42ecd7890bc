"""Write the protocol's test vectors to docs/protocol/vectors/: `python -m devstack.protocol_vectors`.

Every key here is a TEST KEY: its secret half is derived from a public label and published in
`test-keys.json`, so nothing sealed or signed with it is secret or authentic. The output is the same
bytes on every run: Ed25519 signatures are deterministic, and the one sealed box is made here with a
fixed (test) ephemeral key by libsodium's own construction (`crypto_box_seal`), so it opens like any other.

The vectors are built here step by step, beside the product's code rather than through it, so the
tests (tests/protocol/test_vectors.py) can check the product against a second construction both ways.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import msgspec
from nacl.bindings import crypto_box, crypto_scalarmult_base
from nacl.encoding import RawEncoder
from nacl.hash import blake2b
from nacl.signing import SigningKey

from referral_protocol.consent import CONSENT_VERSION, consent_text_sha256
from referral_protocol.encoding import enrolment_fingerprint
from referral_protocol.envelope import ENVELOPE_FORMAT, EnvelopeBody, Recipient, SignedEnvelope
from referral_protocol.key_change import KEY_CHANGE_FORMAT, KEY_CHANGE_KIND, KEY_CHANGE_REFERENCE, KeyChangeStatement
from referral_protocol.padding import BUCKETS
from referral_protocol.referral import REFERRAL_PAYLOAD_FORMAT, Need, Patient, ReferralPayload, SealedConsent
from referral_protocol.request_signature import sign_request
from referral_protocol.webhook import SIGNATURE_HEADER, WebhookBody

VECTORS = Path(__file__).resolve().parent.parent / "docs" / "protocol" / "vectors"
_LABEL = b"referral-broker PUBLISHED TEST KEY, never use: "
WARNING = "TEST KEYS ONLY: these secrets are published; nothing made with them is secret or authentic"

BROKER_URL = "https://broker.test"
SLUG = "test-clinic"
ISSUED_AT = datetime(2026, 11, 2, 9, 30, 0, tzinfo=UTC)
SIGNED_AT = datetime(2026, 11, 2, 9, 31, 0, tzinfo=UTC)
DELIVERY_ID = "0000508a-1c6e-8f3b-9a1d-5e7c2b40f001"  # an id of 2026-11-02 (day 20394 in its first 16 bits)
REFERENCE = "RB-7K3QM-X2D9P"
REQUEST_NONCE = "dGVzdC12ZWN0b3Itbm9uY2Ut"  # 24 characters: a published nonce, as test-only as the keys


def test_secret(label: str) -> bytes:
    """A 32-byte secret anyone can compute: SHA-256 of a label that says it is a published test key."""
    return hashlib.sha256(_LABEL + label.encode()).digest()


BROKER_SIGNING_SEED = test_secret("broker signing")
BROKER_NEXT_SIGNING_SEED = test_secret("broker signing, next")
STATEMENT_ID = "3b0c5d2e-7a41-4f6e-9c1d-2b8a6f0e4d71"
CLINIC_SIGNING_SEED = test_secret("clinic signing")
CLINIC_ENCRYPTION_SECRET = test_secret("clinic encryption")
EPHEMERAL_SECRET = test_secret("sealed box ephemeral")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _key_id(public: bytes) -> str:
    return hashlib.sha256(public).hexdigest()[:16]


def broker_public() -> bytes:
    return bytes(SigningKey(BROKER_SIGNING_SEED).verify_key)


def broker_next_public() -> bytes:
    return bytes(SigningKey(BROKER_NEXT_SIGNING_SEED).verify_key)


def clinic_signing_public() -> bytes:
    return bytes(SigningKey(CLINIC_SIGNING_SEED).verify_key)


def clinic_encryption_public() -> bytes:
    return crypto_scalarmult_base(CLINIC_ENCRYPTION_SECRET)


def sealed_box(message: bytes, recipient_public: bytes, ephemeral_secret: bytes) -> bytes:
    """libsodium's crypto_box_seal with a chosen ephemeral key: epk ‖ crypto_box(m, blake2b-24(epk ‖ pk))."""
    ephemeral_public = crypto_scalarmult_base(ephemeral_secret)
    nonce = blake2b(ephemeral_public + recipient_public, digest_size=24, encoder=RawEncoder)
    return ephemeral_public + crypto_box(message, nonce, recipient_public, ephemeral_secret)


def iso7816_pad(plaintext: bytes) -> bytes:
    size = next(b for b in BUCKETS if len(plaintext) < b)
    return plaintext + b"\x80" + b"\x00" * (size - len(plaintext) - 1)


def test_keys() -> dict[str, Any]:
    return {
        "warning": WARNING,
        "broker_signing_seed": _b64(BROKER_SIGNING_SEED),
        "broker_signing_public": _b64(broker_public()),
        "broker_key_id": _key_id(broker_public()),
        "broker_pub_file": f"ed25519:{_b64(broker_public())}",
        "broker_next_signing_seed": _b64(BROKER_NEXT_SIGNING_SEED),
        "broker_next_signing_public": _b64(broker_next_public()),
        "broker_next_key_id": _key_id(broker_next_public()),
        "clinic_slug": SLUG,
        "clinic_signing_seed": _b64(CLINIC_SIGNING_SEED),
        "clinic_signing_public": _b64(clinic_signing_public()),
        "clinic_signing_key_id": _key_id(clinic_signing_public()),
        "clinic_encryption_secret": _b64(CLINIC_ENCRYPTION_SECRET),
        "clinic_encryption_public": _b64(clinic_encryption_public()),
        "clinic_encryption_key_id": _key_id(clinic_encryption_public()),
        "sealed_box_ephemeral_secret": _b64(EPHEMERAL_SECRET),
        "labels": "each secret is SHA-256 of 'referral-broker PUBLISHED TEST KEY, never use: ' and its purpose",
    }


def key_id_vector() -> dict[str, Any]:
    public = clinic_encryption_public()
    return {
        "warning": WARNING,
        "public_key": _b64(public),
        "sha256_hex": hashlib.sha256(public).hexdigest(),
        "key_id": _key_id(public),
        "enrolment_fingerprint": {
            "slug": SLUG,
            "encryption_key": _b64(public),
            "signing_key": _b64(clinic_signing_public()),
            "fingerprint": enrolment_fingerprint(SLUG, public, clinic_signing_public()),
        },
    }


def padding_vector() -> dict[str, Any]:
    cases = []
    for plaintext in (b"Hei", b"x" * (BUCKETS[0] - 1), b"x" * BUCKETS[0]):
        padded = iso7816_pad(plaintext)
        cases.append(
            {
                "plaintext_length": len(plaintext),
                "plaintext_sha256": hashlib.sha256(plaintext).hexdigest(),
                "padded_length": len(padded),
                "padded_sha256": hashlib.sha256(padded).hexdigest(),
            }
        )
    short = iso7816_pad(b"Hei")
    return {
        "buckets": list(BUCKETS),
        "example": {"plaintext": _b64(b"Hei"), "padded": _b64(short)},
        "cases": cases,
    }


def referral_payload() -> ReferralPayload:
    return ReferralPayload(
        format=REFERRAL_PAYLOAD_FORMAT,
        delivery_id=DELIVERY_ID,
        reference=REFERENCE,
        clinic=SLUG,
        submitted_at=ISSUED_AT,
        patient=Patient(
            name="Test Testesen (fictional)",
            email="test.testesen@example.no",
            phone="+4740000000",
            birth_date=date(1980, 1, 31),
        ),
        need=Need(
            description="Vondt i kneet etter fall på ski. (Test vector; no real person.)", category="physiotherapy"
        ),
        consent=SealedConsent(version=CONSENT_VERSION, accepted_at=ISSUED_AT, text_sha256=consent_text_sha256()),
    )


_ENVELOPE_DOMAIN = b"referral-broker envelope v1\x00"


def _sealed_envelope(payload: bytes, *, kind: str, delivery_id: str, reference: str) -> tuple[bytes, bytes, bytes]:
    """`payload` padded, sealed to the test clinic with the fixed ephemeral key and signed by the test broker key,
    as the broker does (deterministic): the padded payload, the envelope body and the signed envelope, as bytes."""
    encoder = msgspec.json.Encoder()
    padded = iso7816_pad(payload)
    body = EnvelopeBody(
        kind=kind,
        delivery_id=delivery_id,
        reference=reference,
        clinic=SLUG,
        issued_at=ISSUED_AT,
        recipients=[
            Recipient(
                key_id=_key_id(clinic_encryption_public()),
                box=sealed_box(padded, clinic_encryption_public(), EPHEMERAL_SECRET),
            )
        ],
    )
    body_bytes = encoder.encode(body)
    signature = SigningKey(BROKER_SIGNING_SEED).sign(_ENVELOPE_DOMAIN + body_bytes).signature
    envelope = encoder.encode(
        SignedEnvelope(format=ENVELOPE_FORMAT, signer=_key_id(broker_public()), body=body_bytes, signature=signature)
    )
    return padded, body_bytes, envelope


def envelope_vector() -> dict[str, Any]:
    payload = msgspec.json.encode(referral_payload())
    padded, body_bytes, envelope = _sealed_envelope(
        payload, kind="referral", delivery_id=DELIVERY_ID, reference=REFERENCE
    )
    inbox_page = b'{"items":[{"delivery_id":"%s","envelope":"%s"}],"more":false}' % (
        DELIVERY_ID.encode(),
        _b64(envelope).encode(),
    )
    return {
        "warning": WARNING,
        "broker_key": _b64(broker_public()),
        "clinic": SLUG,
        "opening_key": _b64(CLINIC_ENCRYPTION_SECRET),
        "payload": payload.decode(),
        "padded_payload_length": len(padded),
        "envelope_body": body_bytes.decode(),
        "signed_message": _b64(_ENVELOPE_DOMAIN + body_bytes),
        "envelope": envelope.decode(),
        "inbox_page": inbox_page.decode(),
    }


def _signature_base(method: str, path: str, query: str, headers: dict[str, str], digest: bool) -> str:
    signature_input = headers["Signature-Input"]
    params = signature_input.split("=", 1)[1]
    lines = [f'"@method": {method}', f'"@path": {path}', f'"@query": {query}']
    if digest:
        lines.append(f'"content-digest": {headers["Content-Digest"]}')
    lines.append(f'"@signature-params": {params}')
    return "\n".join(lines)


def request_vectors() -> dict[str, Any]:
    cases = []
    for method, path, query, body in (
        ("GET", "/api/v1/clinic/inbox", "?limit=100&after=start", b""),
        ("POST", "/api/v1/clinic/inbox/ack", "", b'{"delivery_ids":["%s"]}' % DELIVERY_ID.encode()),
    ):
        sent = {"accept": "application/json"}
        if body:
            sent["content-type"] = "application/json"
        url = BROKER_URL + path + query
        headers = sign_request(
            method,
            url,
            sent,
            body,
            key_id=_key_id(clinic_signing_public()),
            seed=CLINIC_SIGNING_SEED,
            created=SIGNED_AT,
            nonce=REQUEST_NONCE,
        )
        cases.append(
            {
                "method": method,
                "url": url,
                "body": body.decode(),
                "headers": headers,
                "signature_base": _signature_base(method, path, query or "?", headers, bool(body)),
            }
        )
    return {
        "warning": WARNING,
        "clinic_signing_public": _b64(clinic_signing_public()),
        "created": int(SIGNED_AT.timestamp()),
        "requests": cases,
    }


def webhook_vector() -> dict[str, Any]:
    body = msgspec.json.encode(
        WebhookBody(
            type="referrals.available",
            clinic=SLUG,
            notification=str(uuid.UUID("0000508a-1c6e-8f3b-9a1d-5e7c2b40f0aa")),
            sent_at=SIGNED_AT.isoformat(),
        )
    )
    t = int(SIGNED_AT.timestamp())
    signature = SigningKey(BROKER_SIGNING_SEED).sign(b"referral-broker webhook v1\x00" + f"{t}.".encode() + body)
    return {
        "warning": WARNING,
        "broker_key": _b64(broker_public()),
        "body": body.decode(),
        "t": t,
        "signed_message": _b64(b"referral-broker webhook v1\x00" + f"{t}.".encode() + body),
        "header_name": SIGNATURE_HEADER,
        "header": f"t={t}, keyid={_key_id(broker_public())}, ed25519={_b64(signature.signature)}",
    }


def broker_key_fingerprint(public: bytes) -> str:
    digest = hashlib.sha256(b"referral-broker broker key v1\x00" + public).digest()[:20]
    text = base64.b32encode(digest).decode()
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))


def key_change_vector() -> dict[str, Any]:
    """An announcement: signed by the (test) broker key, carrying the (test) next key; sealed like any envelope."""
    statement = KeyChangeStatement(
        format=KEY_CHANGE_FORMAT,
        action="announce",
        statement_id=STATEMENT_ID,
        clinic=SLUG,
        issued_at=ISSUED_AT,
        old_key=broker_public(),
        new_key=broker_next_public(),
        new_key_fingerprint=broker_key_fingerprint(broker_next_public()),
    )
    payload = msgspec.json.encode(statement)
    _, body_bytes, envelope = _sealed_envelope(
        payload, kind=KEY_CHANGE_KIND, delivery_id=STATEMENT_ID, reference=KEY_CHANGE_REFERENCE
    )
    return {
        "warning": WARNING,
        "old_key": _b64(broker_public()),
        "old_key_id": _key_id(broker_public()),
        "new_key": _b64(broker_next_public()),
        "new_key_id": _key_id(broker_next_public()),
        "new_key_fingerprint": broker_key_fingerprint(broker_next_public()),
        "fingerprint_message": _b64(b"referral-broker broker key v1\x00" + broker_next_public()),
        "clinic": SLUG,
        "opening_key": _b64(CLINIC_ENCRYPTION_SECRET),
        "statement": payload.decode(),
        "envelope_body": body_bytes.decode(),
        "envelope": envelope.decode(),
    }


def vectors() -> dict[str, bytes]:
    """Every vector file, by name, as bytes."""
    made = {
        "test-keys.json": test_keys(),
        "key-id.json": key_id_vector(),
        "padding.json": padding_vector(),
        "envelope.json": envelope_vector(),
        "signed-requests.json": request_vectors(),
        "webhook.json": webhook_vector(),
        "key-change.json": key_change_vector(),
    }
    return {name: (json.dumps(v, indent=2, ensure_ascii=False) + "\n").encode() for name, v in made.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check the files are up to date")
    args = parser.parse_args(argv)
    stale = []
    for name, data in vectors().items():
        path = VECTORS / name
        if path.exists() and path.read_bytes() == data:
            continue
        stale.append(name)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    if args.check and stale:
        print("out of date: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
