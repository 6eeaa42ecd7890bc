"""How a patient's one-time code travels: e-mail through SMTP, text messages through a gateway.

The message says only that a code was asked for and what it is. It says nothing about whether the
address has any referral, so a code sent to an address with none reads exactly like any other.

Text messages go through `SmsGateway`, a one-method interface: `HttpSmsGateway` posts JSON to a
provider's HTTPS endpoint with a bearer token; `DevOutbox` writes messages (and e-mails, when no
SMTP server is configured) as files in a folder, for a developer's machine only.
"""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Protocol

import httpx

from referral_broker import texts
from referral_broker.services.notice_channels import TIMEOUT_SECONDS, ChannelFailed, SmtpServer, deliver_email
from referral_broker.services.ports import CodeNotSent, CodeSender
from referral_broker.services.settings import Settings

SUBJECT = " / ".join(texts.in_both("code.subject"))


def code_text(code: str, minutes: int) -> str:
    """The code, in bokmål and English: the patient may have asked in either."""
    return "\n".join(texts.in_both("code.text", code=code, minutes=minutes))


class SmsGateway(Protocol):
    async def send_sms(self, to: str, text: str) -> None: ...


class HttpSmsGateway:
    """POST `{"to": "+47…", "text": "…"}` with `Authorization: Bearer <token>`; any 2xx is success."""

    def __init__(self, url: str, token: str | None) -> None:
        self._url = url
        self._token = token

    async def send_sms(self, to: str, text: str) -> None:
        headers = {"user-agent": "referral-broker"}
        if self._token:
            headers["authorization"] = f"Bearer {self._token}"
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS, follow_redirects=False) as client:
                response = await client.post(self._url, json={"to": to, "text": text}, headers=headers)
        except httpx.HTTPError as exc:
            raise CodeNotSent(type(exc).__name__) from exc
        if not 200 <= response.status_code < 300:
            raise CodeNotSent(f"SMS gateway HTTP {response.status_code}")


class DevOutbox:
    """Development only: each message becomes a file (mode 0600) in `folder`, newest last by name."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def write(self, channel: str, to: str, text: str) -> Path:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        path = self.folder / f"{stamp}-{secrets.token_hex(4)}.{channel}.txt"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(f"To: {to}\n\n{text}")
        return path

    async def send_sms(self, to: str, text: str) -> None:
        await self.deliver("sms", to, text)

    async def deliver(self, channel: str, to: str, text: str) -> None:
        try:
            self.write(channel, to, text)
        except OSError as exc:
            raise CodeNotSent(f"dev outbox: {exc.strerror}") from exc


async def send_code_email(server: SmtpServer, sender: str, recipient: str, text: str) -> None:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = SUBJECT
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message.set_content(text)
    try:
        await deliver_email(server, message)
    except ChannelFailed as exc:
        raise CodeNotSent(exc.reason) from exc


class ConfiguredCodeSender:
    """E-mail through SMTP (or the dev outbox), text messages through the gateway (or the dev outbox)."""

    def __init__(self, settings: Settings) -> None:
        self._smtp = SmtpServer.from_url(settings.smtp_url) if settings.smtp_url else None
        self._mail_from = settings.mail_from
        self._dev = DevOutbox(settings.dev_outbox) if settings.dev_outbox else None
        self._sms: SmsGateway | None = (
            HttpSmsGateway(settings.sms_url, settings.sms_token) if settings.sms_url else self._dev
        )

    def can_send(self, channel: str) -> bool:
        if channel == "email":
            return self._smtp is not None or self._dev is not None
        return self._sms is not None

    async def send(self, channel: str, destination: str, code: str, minutes: int) -> None:
        text = code_text(code, minutes)
        if channel == "email":
            if self._smtp is not None:
                await send_code_email(self._smtp, self._mail_from, destination, text)
                return
            if self._dev is not None:
                await self._dev.deliver("email", destination, f"Subject: {SUBJECT}\n\n{text}")
                return
            raise CodeNotSent("e-mail is not configured")
        if self._sms is None:
            raise CodeNotSent("text messages are not configured")
        await self._sms.send_sms(destination, text)


def configured_sender(settings: Settings) -> CodeSender:
    return ConfiguredCodeSender(settings)
