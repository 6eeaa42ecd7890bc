"""How a notice reaches a clinic: an e-mail through SMTP, and a webhook signed with the broker's key.

A notice says only that something waits to be pulled. It carries no health information, no patient
identity, not even a reference or a count: whoever reads a clinic's mail learns nothing about anyone.

Webhook signature: header `Referral-Broker-Signature: t=<unix time>, keyid=<broker key id>,
ed25519=<base64 signature>` over `"referral-broker webhook v1\\0" ‖ "<t>." ‖ body`. Clinics verify it
with the broker key they pinned at `referral-clinic init` and refuse a `t` older than five minutes.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from urllib.parse import unquote, urlsplit

import aiosmtplib
import httpx
import msgspec

from referral_protocol.envelope import BrokerSigner

WEBHOOK_DOMAIN = b"referral-broker webhook v1\x00"
SIGNATURE_HEADER = "Referral-Broker-Signature"
TIMEOUT_SECONDS = 10.0


class ChannelFailed(Exception):
    """The notice did not go out through this channel this time; `reason` is short and names no one."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Notice:
    id: str
    kind: str  # "available" or "reminder"
    clinic_slug: str
    clinic_name: str
    at: datetime


_SUBJECTS = {
    "available": "Nye henvisninger venter / New referrals are waiting",
    "reminder": "Påminnelse: henvisninger venter / Reminder: referrals are waiting",
}
_OPENINGS = {
    "available": (
        "Det ligger nye henvisninger til {name} hos henvisningsformidleren.",
        "New referrals for {name} are waiting at the referral broker.",
    ),
    "reminder": (
        "Henvisninger til {name} har ventet en stund uten å bli hentet.",
        "Referrals for {name} have been waiting for a while without being fetched.",
    ),
}


def email_text(notice: Notice, broker_url: str) -> tuple[str, str]:
    """Subject and body: that something waits, and how to fetch it. Nothing about anyone."""
    norwegian, english = (line.format(name=notice.clinic_name) for line in _OPENINGS[notice.kind])
    body = (
        f"{norwegian}\nHent dem med: referral-clinic pull\n\n"
        f"{english}\nFetch them with: referral-clinic pull\n\n"
        f"-- \n{broker_url}\n"
    )
    return _SUBJECTS[notice.kind], body


@dataclass(frozen=True)
class SmtpServer:
    hostname: str
    port: int
    username: str | None
    password: str | None
    use_tls: bool
    start_tls: bool | None  # None: STARTTLS when the server offers it

    @classmethod
    def from_url(cls, url: str) -> SmtpServer:
        """`smtp://` (STARTTLS when offered), `smtp+starttls://` (STARTTLS required), `smtps://` (TLS)."""
        parts = urlsplit(url)
        scheme = parts.scheme
        default_port = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}[scheme]
        return cls(
            hostname=parts.hostname or "localhost",
            port=parts.port or default_port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=scheme == "smtps",
            start_tls=True if scheme == "smtp+starttls" else (False if scheme == "smtps" else None),
        )


async def send_email(server: SmtpServer, sender: str, recipient: str, notice: Notice, broker_url: str) -> None:
    subject, body = email_text(notice, broker_url)
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = format_datetime(notice.at)
    message["Message-ID"] = make_msgid(idstring=notice.id.replace("-", ""), domain=sender.rpartition("@")[2] or None)
    message.set_content(body)
    await deliver_email(server, message)


async def deliver_email(server: SmtpServer, message: EmailMessage) -> None:
    """Hand one message to the SMTP server; ChannelFailed says why not, in a few words naming no one."""
    try:
        await aiosmtplib.send(
            message,
            hostname=server.hostname,
            port=server.port,
            username=server.username,
            password=server.password,
            use_tls=server.use_tls,
            start_tls=server.start_tls,
            timeout=TIMEOUT_SECONDS,
        )
    except aiosmtplib.SMTPResponseException as exc:
        raise ChannelFailed(f"SMTP {exc.code}") from exc
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise ChannelFailed(type(exc).__name__) from exc


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
