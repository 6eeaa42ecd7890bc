"""A clinic's webhook: a JSON POST signed with the broker's key, saying only that something waits.

The body, the header and its verification are the protocol's (`referral_protocol.webhook`, docs/protocol.md).
"""

from __future__ import annotations

from datetime import datetime

import httpx
import msgspec

from referral_broker.adapters import TIMEOUT_SECONDS
from referral_broker.services.notice_channels import ChannelFailed, Notice
from referral_protocol.envelope import BrokerSigner
from referral_protocol.webhook import SIGNATURE_HEADER, WEBHOOK_DOMAIN, WebhookBody, signature_header

__all__ = ["SIGNATURE_HEADER", "WEBHOOK_DOMAIN", "WebhookBody", "post_webhook", "sign_webhook"]


def sign_webhook(signer: BrokerSigner, body: bytes, at: datetime) -> str:
    return signature_header(signer.sign, signer.key_id, body, at)


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
