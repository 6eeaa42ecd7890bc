"""A clinic's webhook: a JSON POST signed with the broker's key, saying only that something waits.

Signature: header `Referral-Broker-Signature: t=<unix time>, keyid=<broker key id>,
ed25519=<base64 signature>` over `"referral-broker webhook v1\\0" ‖ "<t>." ‖ body`. Clinics verify it
with the broker key they pinned at `referral-clinic init` and refuse a `t` older than five minutes.
"""

from __future__ import annotations

import base64
from datetime import datetime

import httpx
import msgspec

from referral_broker.adapters import TIMEOUT_SECONDS
from referral_broker.services.notice_channels import ChannelFailed, Notice
from referral_protocol.envelope import BrokerSigner

WEBHOOK_DOMAIN = b"referral-broker webhook v1\x00"
SIGNATURE_HEADER = "Referral-Broker-Signature"


class WebhookBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    type: str  # "referrals.available" or "referrals.reminder"
    clinic: str
    notification: str
    sent_at: str


def sign_webhook(signer: BrokerSigner, body: bytes, at: datetime) -> str:
    timestamp = int(at.timestamp())
    signature = signer.sign(WEBHOOK_DOMAIN, f"{timestamp}.".encode() + body)
    return f"t={timestamp}, keyid={signer.key_id}, ed25519={base64.b64encode(signature).decode()}"


async def post_webhook(url: str, signer: BrokerSigner, notice: Notice) -> None:
    body = msgspec.json.encode(
        WebhookBody(
            type=f"referrals.{notice.kind}",
            clinic=notice.clinic_slug,
            notification=notice.id,
            sent_at=notice.at.isoformat(),
        )
    )
    headers = {
        "content-type": "application/json",
        SIGNATURE_HEADER: sign_webhook(signer, body, notice.at),
        "user-agent": "referral-broker",
    }
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS, follow_redirects=False) as client:
            response = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise ChannelFailed(type(exc).__name__) from exc
    if not 200 <= response.status_code < 300:
        raise ChannelFailed(f"HTTP {response.status_code}")
