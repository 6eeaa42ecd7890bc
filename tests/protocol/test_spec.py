"""docs/protocol.md states the code's constants: a changed tag, limit or name fails here until the
specification says the same (and the request-signature profile it states is the one the code enforces)."""

from __future__ import annotations

import base64
import hashlib
import typing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageSigner, algorithms
from http_message_signatures.digests import ContentDigest
from nacl.signing import SigningKey

from referral_broker.services import clinic_auth, clinic_inbox
from referral_protocol import clinic_identity, encoding, envelope, schemas, webhook
from referral_protocol.categories import CATEGORIES
from referral_protocol.enrolment import (
    ENROLLMENT_FORMAT,
    KEY_REQUEST_FORMAT,
    MAX_ACK,
    InboxCursor,
    RefusalReason,
)
from referral_protocol.keyfile import KEYFILE_FORMAT, MIN_PASSPHRASE
from referral_protocol.notice import NOTICE_PAYLOAD_FORMAT, NoticeKind
from referral_protocol.padding import BUCKETS
from referral_protocol.referral import REFERRAL_PAYLOAD_FORMAT, Slug
from referral_protocol.request_signature import (
    CLOCK_SKEW,
    MAX_AGE,
    NONCE_LENGTH,
    TAG,
    RequestSignatureInvalid,
    sign_request,
    verify_request,
)

SPEC = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
URL = "https://broker.test/api/v1/clinic/inbox/ack"
BODY = b'{"delivery_ids":[]}'
AT = datetime(2026, 11, 2, 9, 31, tzinfo=UTC)
SEED = hashlib.sha256(b"test_spec: a throwaway test key").digest()
PUBLIC = bytes(SigningKey(SEED).verify_key)


def _pattern(annotated: object) -> str:
    meta = typing.get_args(annotated)[1]
    return str(meta.pattern)


def _tag(domain: bytes) -> str:
    assert domain.endswith(b"\x00")
    return f'"{domain[:-1].decode()}" ‖ 0x00'


def test_the_spec_names_every_format_schema_and_tag() -> None:
    named = [
        envelope.ENVELOPE_FORMAT,
        REFERRAL_PAYLOAD_FORMAT,
        NOTICE_PAYLOAD_FORMAT,
        ENROLLMENT_FORMAT,
        KEY_REQUEST_FORMAT,
        KEYFILE_FORMAT,
        f'"{TAG}"',
        *(f"`{n}`" for n in schemas.NAMES),
        _tag(envelope._SIGNATURE_DOMAIN),
        _tag(webhook.WEBHOOK_DOMAIN),
        _tag(clinic_identity._PROOF_DOMAIN),
        _tag(clinic_identity._KEY_PROOF_DOMAIN),
        _tag(clinic_identity._KEY_ENDORSEMENT_DOMAIN),
        _tag(clinic_identity._KEY_FINGERPRINT_DOMAIN),
        webhook.SIGNATURE_HEADER,
        _pattern(InboxCursor),
        _pattern(Slug),
    ]
    assert [n for n in named if n not in SPEC] == []


def test_the_enrolment_fingerprint_tag_in_the_spec_is_the_codes() -> None:
    spec = '"referral-broker enrolment v1" ‖ 0x00 ‖ slug ‖ 0x00 ‖ encryption_key ‖ signing_key'
    assert spec in SPEC
    digest = hashlib.sha256(b"referral-broker enrolment v1\x00s\x00" + b"e" * 32 + b"g" * 32).digest()[:20]
    text = base64.b32encode(digest).decode()
    assert encoding.enrolment_fingerprint("s", b"e" * 32, b"g" * 32) == "-".join(
        text[i : i + 4] for i in range(0, 32, 4)
    )


def test_the_spec_states_the_codes_limits_and_vocabularies() -> None:
    stated = [
        ", ".join(str(b) for b in BUCKETS[:-1]) + f" or {BUCKETS[-1]} bytes",
        f"at most {MAX_ACK}",
        f"clamped to 1..{clinic_inbox.MAX_PAGE}",
        f"{NONCE_LENGTH[0]} to {NONCE_LENGTH[1]} characters",
        f"at least {MIN_PASSPHRASE} characters",
        *(f"`{r}`" for r in typing.get_args(RefusalReason)),
        *(f"`{k.value}`" for k in NoticeKind),
        *(f"`{c}`" for c in CATEGORIES),
        *(f'"{t}"' for t in webhook.WEBHOOK_TYPES),
    ]
    assert [s for s in stated if s not in SPEC] == []
    assert timedelta(minutes=5) == MAX_AGE and "more than **5 minutes and 5 seconds** behind" in SPEC
    assert timedelta(seconds=5) == CLOCK_SKEW and "more than **5 seconds** ahead" in SPEC
    assert timedelta(minutes=11) == clinic_auth.NONCE_RETENTION and "nonces per key for\n  11 minutes" in SPEC
    assert timedelta(minutes=5) == webhook.MAX_AGE and "a `t` more than 5 minutes away" in SPEC


def _signed_with_digest(algorithm: str, body: bytes) -> dict[str, str]:
    class Digest(ContentDigest):
        pass

    Digest.algorithm = algorithm

    class Signer(HTTPMessageSigner):
        content_digest_class = Digest

    class Message:
        def __init__(self) -> None:
            self.method, self.url, self.headers = "POST", URL, {"content-type": "application/json"}

    class Key:
        def resolve_private_key(self, key_id: str) -> Ed25519PrivateKey:
            return Ed25519PrivateKey.from_private_bytes(SEED)

    message = Message()
    Signer(signature_algorithm=algorithms.ED25519, key_resolver=Key()).sign(  # type: ignore[arg-type]
        message,
        key_id=encoding.key_id(PUBLIC),
        nonce="n" * 24,
        tag=TAG,
        covered_component_ids=("@method", "@path", "@query"),
        created=AT,
        body=body,
    )
    return message.headers


@pytest.mark.parametrize("algorithm", ["sha-256", "sha-512"])
def test_content_digest_may_be_sha_256_or_sha_512(algorithm: str) -> None:
    headers = _signed_with_digest(algorithm, BODY)
    assert headers["Content-Digest"].startswith(f"{algorithm}=:")
    verify_request("POST", URL, headers, BODY, public_key=PUBLIC, now=lambda: AT)
    with pytest.raises(RequestSignatureInvalid):
        verify_request("POST", URL, headers, BODY + b" ", public_key=PUBLIC, now=lambda: AT)


def test_a_body_without_a_covered_digest_is_refused() -> None:
    headers = sign_request("POST", URL, {}, None, key_id=encoding.key_id(PUBLIC), seed=SEED, created=AT)
    with pytest.raises(RequestSignatureInvalid):
        verify_request("POST", URL, headers, BODY, public_key=PUBLIC, now=lambda: AT)


@pytest.mark.parametrize(
    ("nonce", "accepted"), [("n" * 15, False), ("n" * 16, True), ("n" * 64, True), ("n" * 65, False)]
)
def test_the_nonce_has_sixteen_to_sixty_four_characters(nonce: str, accepted: bool) -> None:
    headers = sign_request("GET", URL, {}, None, key_id=encoding.key_id(PUBLIC), seed=SEED, created=AT, nonce=nonce)
    if accepted:
        assert verify_request("GET", URL, headers, b"", public_key=PUBLIC, now=lambda: AT).nonce == nonce
    else:
        with pytest.raises(RequestSignatureInvalid):
            verify_request("GET", URL, headers, b"", public_key=PUBLIC, now=lambda: AT)


def test_a_signature_without_the_tag_is_refused() -> None:
    headers = sign_request("GET", URL, {}, None, key_id=encoding.key_id(PUBLIC), seed=SEED, created=AT)
    headers["Signature-Input"] = headers["Signature-Input"].replace(f';tag="{TAG}"', "")
    with pytest.raises(RequestSignatureInvalid):
        verify_request("GET", URL, headers, b"", public_key=PUBLIC, now=lambda: AT)
