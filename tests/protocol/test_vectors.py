"""The published test vectors (docs/protocol/vectors/) against the product's code, both ways: the code
makes the same bytes where the cryptography is deterministic, and it accepts, opens and verifies them."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from nacl.exceptions import BadSignatureError
from nacl.public import PrivateKey, SealedBox
from nacl.signing import VerifyKey

from devstack import protocol_vectors
from referral_broker.adapters.webhook import sign_webhook
from referral_protocol import envelope as envelope_module
from referral_protocol.encoding import enrolment_fingerprint, key_id
from referral_protocol.enrolment import InboxPage
from referral_protocol.envelope import BrokerSigner, open_envelope, seal
from referral_protocol.errors import EnvelopeRejected
from referral_protocol.padding import pad, unpad
from referral_protocol.referral import ReferralPayload
from referral_protocol.request_signature import RequestSignatureInvalid, sign_request, verify_request
from referral_protocol.webhook import WebhookInvalid, verify_webhook

VECTORS = protocol_vectors.VECTORS


def _load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((VECTORS / name).read_bytes())
    return loaded


def _b(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


@pytest.mark.parametrize("name", sorted(protocol_vectors.vectors()))
def test_the_published_vectors_are_what_the_generator_makes(name: str) -> None:
    assert (VECTORS / name).read_bytes() == protocol_vectors.vectors()[name], (
        f"{name} is stale: run python -m devstack.protocol_vectors"
    )


def test_the_vectors_readme_says_the_keys_are_test_keys() -> None:
    readme = (VECTORS / "README.md").read_text()
    assert "TEST KEYS" in readme and "never" in readme
    assert _load("test-keys.json")["warning"].startswith("TEST KEYS ONLY")


def test_a_key_id_is_sixteen_hex_digits_of_the_keys_sha256() -> None:
    v = _load("key-id.json")
    public = _b(v["public_key"])
    assert key_id(public) == v["key_id"] == v["sha256_hex"][:16] == hashlib.sha256(public).hexdigest()[:16]
    f = v["enrolment_fingerprint"]
    assert enrolment_fingerprint(f["slug"], _b(f["encryption_key"]), _b(f["signing_key"])) == f["fingerprint"]


def test_padding_makes_and_reads_the_vectors_buckets() -> None:
    v = _load("padding.json")
    assert pad(_b(v["example"]["plaintext"])) == _b(v["example"]["padded"])
    assert unpad(_b(v["example"]["padded"])) == _b(v["example"]["plaintext"])
    for case in v["cases"]:
        plaintext = b"x" * case["plaintext_length"] if case["plaintext_length"] > 3 else b"Hei"
        assert hashlib.sha256(plaintext).hexdigest() == case["plaintext_sha256"]
        padded = pad(plaintext)
        assert len(padded) == case["padded_length"]
        assert hashlib.sha256(padded).hexdigest() == case["padded_sha256"]


def test_the_vector_envelope_opens_to_its_payload() -> None:
    v = _load("envelope.json")
    body, plaintext = open_envelope(
        v["envelope"].encode(), broker_key=_b(v["broker_key"]), clinic=v["clinic"], private_keys=[_b(v["opening_key"])]
    )
    assert plaintext == v["payload"].encode()
    payload = msgspec.json.decode(plaintext, type=ReferralPayload)
    assert (payload.delivery_id, payload.reference, payload.clinic) == (body.delivery_id, body.reference, body.clinic)
    # The sealed box is libsodium's: the library opens it, to the padded payload of the stated length.
    box = body.recipients[0].box
    padded = SealedBox(PrivateKey(_b(v["opening_key"]))).decrypt(box)
    assert len(padded) == v["padded_payload_length"] and unpad(padded) == plaintext
    # The envelope is what an inbox item carries, base64.
    page = msgspec.json.decode(v["inbox_page"], type=InboxPage)
    assert page.items[0].envelope == v["envelope"].encode()
    # The signature is over the stated message: the domain tag and the body's exact bytes.
    signed = json.loads(v["envelope"])
    assert _b(v["signed_message"]) == b"referral-broker envelope v1\x00" + v["envelope_body"].encode()
    VerifyKey(_b(v["broker_key"])).verify(_b(v["signed_message"]), _b(signed["signature"]))


def test_seal_makes_the_vector_envelope_byte_for_byte(monkeypatch: pytest.MonkeyPatch) -> None:
    v = _load("envelope.json")
    keys = _load("test-keys.json")

    class FixedEphemeral:
        """The sealed box with the vectors' published ephemeral key; everything else is `seal`'s own."""

        def __init__(self, public: Any) -> None:
            self._public = bytes(public)

        def encrypt(self, message: bytes) -> bytes:
            return protocol_vectors.sealed_box(message, self._public, _b(keys["sealed_box_ephemeral_secret"]))

    monkeypatch.setattr(envelope_module, "SealedBox", FixedEphemeral)
    payload = msgspec.json.decode(v["payload"], type=ReferralPayload)
    made = seal(
        v["payload"].encode(),
        kind="referral",
        delivery_id=payload.delivery_id,
        reference=payload.reference,
        clinic=payload.clinic,
        issued_at=payload.submitted_at,
        recipient_keys=[_b(keys["clinic_encryption_public"])],
        signer=BrokerSigner(_b(keys["broker_signing_seed"])),
    )
    assert made.data == v["envelope"].encode()


@pytest.mark.parametrize(
    "tamper",
    [
        lambda e: e.replace('"signer":"', '"signer":"0'),
        lambda e: e.replace("referral-broker/envelope/v1", "referral-broker/envelope/v2"),
        lambda e: e.replace('{"format"', '{ "format"'),  # not compact: not canonical
    ],
)
def test_an_altered_vector_envelope_is_refused(tamper: Any) -> None:
    v = _load("envelope.json")
    altered = tamper(v["envelope"])
    assert altered != v["envelope"]
    with pytest.raises(EnvelopeRejected):
        open_envelope(
            altered.encode(), broker_key=_b(v["broker_key"]), clinic=v["clinic"], private_keys=[_b(v["opening_key"])]
        )


def _created(v: dict[str, Any]) -> datetime:
    return datetime.fromtimestamp(v["created"], UTC)


def test_signed_requests_verify_and_their_signature_base_is_what_was_signed() -> None:
    v = _load("signed-requests.json")
    public = _b(v["clinic_signing_public"])
    for r in v["requests"]:
        verified = verify_request(
            r["method"], r["url"], r["headers"], r["body"].encode(), public_key=public, now=lambda: _created(v)
        )
        assert verified.created == v["created"] and verified.key_id == key_id(public)
        signature = _b(r["headers"]["Signature"].split("=", 1)[1].strip(":"))
        VerifyKey(public).verify(r["signature_base"].encode(), signature)
        with pytest.raises(BadSignatureError):
            VerifyKey(public).verify(r["signature_base"].replace("/inbox", "/inbax").encode(), signature)


def test_sign_request_makes_the_vector_headers_byte_for_byte() -> None:
    v = _load("signed-requests.json")
    keys = _load("test-keys.json")
    for r in v["requests"]:
        unsigned = {k: h for k, h in r["headers"].items() if k in ("accept", "content-type")}
        nonce = r["headers"]["Signature-Input"].split('nonce="', 1)[1].split('"', 1)[0]
        made = sign_request(
            r["method"],
            r["url"],
            unsigned,
            r["body"].encode(),
            key_id=keys["clinic_signing_key_id"],
            seed=_b(keys["clinic_signing_seed"]),
            created=_created(v),
            nonce=nonce,
        )
        assert made == r["headers"]


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [
        (timedelta(minutes=5), True),  # MAX_AGE
        (timedelta(minutes=5, seconds=5), True),  # and the clock skew allowed on it
        (timedelta(minutes=5, seconds=6), False),
        (-timedelta(seconds=5), True),  # created ahead of the broker's clock by the skew
        (-timedelta(seconds=6), False),
    ],
)
def test_the_freshness_window_is_five_minutes_with_five_seconds_of_skew(offset: timedelta, accepted: bool) -> None:
    v = _load("signed-requests.json")
    r = v["requests"][0]

    def check() -> None:
        verify_request(
            r["method"],
            r["url"],
            r["headers"],
            b"",
            public_key=_b(v["clinic_signing_public"]),
            now=lambda: _created(v) + offset,
        )

    if accepted:
        check()
    else:
        with pytest.raises(RequestSignatureInvalid):
            check()


def test_a_vector_request_with_another_query_or_body_does_not_verify() -> None:
    v = _load("signed-requests.json")
    get, post = v["requests"]
    public = _b(v["clinic_signing_public"])
    with pytest.raises(RequestSignatureInvalid):
        verify_request("GET", get["url"] + "x", get["headers"], b"", public_key=public, now=lambda: _created(v))
    with pytest.raises(RequestSignatureInvalid):
        verify_request(
            "POST",
            post["url"],
            post["headers"],
            post["body"].encode() + b" ",
            public_key=public,
            now=lambda: _created(v),
        )


def test_the_webhook_vector_verifies_and_sign_webhook_makes_its_header() -> None:
    v = _load("webhook.json")
    keys = _load("test-keys.json")
    at = datetime.fromtimestamp(v["t"], UTC)
    body = verify_webhook(v["header"], v["body"].encode(), _b(v["broker_key"]), now=at + timedelta(seconds=30))
    assert body.type == "referrals.available"
    assert sign_webhook(BrokerSigner(_b(keys["broker_signing_seed"])), v["body"].encode(), at) == v["header"]
    signature = _b(v["header"].split("ed25519=", 1)[1])
    VerifyKey(_b(v["broker_key"])).verify(_b(v["signed_message"]), signature)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("stale", "not fresh"),
        ("body", "does not verify"),
        ("key", "other than the pinned"),
        ("header", "malformed"),
    ],
)
def test_an_altered_or_stale_webhook_is_refused(change: str, reason: str) -> None:
    v = _load("webhook.json")
    keys = _load("test-keys.json")
    at = datetime.fromtimestamp(v["t"], UTC)
    header, body, key, now = v["header"], v["body"].encode(), _b(v["broker_key"]), at
    if change == "stale":
        now = at + timedelta(minutes=5, seconds=1)
    elif change == "body":
        body = body.replace(b"available", b"reminder")
    elif change == "key":
        key = _b(keys["clinic_signing_public"])
    else:
        header = header.replace(", keyid", ";keyid")
    with pytest.raises(WebhookInvalid, match=reason):
        verify_webhook(header, body, key, now=now)
