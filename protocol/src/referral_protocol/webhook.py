"""The webhook a broker POSTs to a clinic: a JSON body saying only that something waits, signed by the broker.

Header `Referral-Broker-Signature: t=<unix seconds>, keyid=<broker key id>, ed25519=<base64 signature>`, the
signature being Ed25519 over `"referral-broker webhook v1\\0" ‖ "<t>." ‖ body` (the body's exact bytes).
A receiver verifies it with the broker key it pinned and refuses a `t` more than `MAX_AGE` from its clock
(docs/protocol.md, "Webhooks").
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import msgspec
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from referral_protocol.encoding import key_id

WEBHOOK_DOMAIN = b"referral-broker webhook v1\x00"
SIGNATURE_HEADER = "Referral-Broker-Signature"
MAX_AGE = timedelta(minutes=5)
WEBHOOK_TYPES = ("referrals.available", "referrals.reminder")

_HEADER = re.compile(r"^t=(?P<t>[0-9]{1,12}), keyid=(?P<keyid>[0-9a-f]{16}), ed25519=(?P<sig>[A-Za-z0-9+/]{86}==)$")


class WebhookBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    type: str  # one of WEBHOOK_TYPES
    clinic: str
    notification: str
    sent_at: str


class WebhookInvalid(Exception):
    """Not a fresh webhook signed by the pinned broker key."""


def signature_header(sign: Callable[[bytes, bytes], bytes], signer_key_id: str, body: bytes, at: datetime) -> str:
    """The header value for `body` sent at `at`; `sign(domain, message)` is the broker's Ed25519 signer."""
    timestamp = int(at.timestamp())
    signature = sign(WEBHOOK_DOMAIN, f"{timestamp}.".encode() + body)
    return f"t={timestamp}, keyid={signer_key_id}, ed25519={base64.b64encode(signature).decode()}"


def verify_webhook(
    header: str, body: bytes, broker_key: bytes | Sequence[bytes], *, now: datetime | None = None
) -> WebhookBody:
    """Check the signature header against the pinned `broker_key` (or, during a key change, whichever of the
    pinned keys it names) and the freshness rule; return the body."""
    match = _HEADER.match(header.strip())
    if match is None:
        raise WebhookInvalid(f"{SIGNATURE_HEADER} is malformed")
    pinned = {key_id(k): k for k in ([broker_key] if isinstance(broker_key, bytes) else broker_key)}
    if match["keyid"] not in pinned:
        raise WebhookInvalid("the webhook is signed by a key other than the pinned broker key")
    broker_key = pinned[match["keyid"]]
    sent = int(match["t"])
    moment = (now or datetime.now(UTC)).timestamp()
    if abs(moment - sent) > MAX_AGE.total_seconds():
        raise WebhookInvalid("the webhook is not fresh")
    try:
        signature = base64.b64decode(match["sig"], validate=True)
        VerifyKey(broker_key).verify(WEBHOOK_DOMAIN + f"{sent}.".encode() + body, signature)
    except (BadSignatureError, binascii.Error, ValueError):
        raise WebhookInvalid("the webhook's signature does not verify") from None
    try:
        return msgspec.json.decode(body, type=WebhookBody)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        raise WebhookInvalid(f"the webhook's body is malformed: {exc}") from None
