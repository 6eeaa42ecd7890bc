"""E-mail through an SMTP server (aiosmtplib): clinic notices, patients' one-time codes, customer-service answers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from urllib.parse import unquote, urlsplit

import aiosmtplib

from referral_broker.adapters import TIMEOUT_SECONDS
from referral_broker.services.code_channels import SUBJECT as CODE_SUBJECT
from referral_broker.services.notice_channels import ChannelFailed, Notice, email_text
from referral_broker.services.ports import CodeNotSent, ReplyNotSent


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


async def send_notice_email(server: SmtpServer, sender: str, recipient: str, notice: Notice, broker_url: str) -> None:
    subject, body = email_text(notice, broker_url)
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = format_datetime(notice.at)
    message["Message-ID"] = make_msgid(idstring=notice.id.replace("-", ""), domain=sender.rpartition("@")[2] or None)
    message.set_content(body)
    await deliver_email(server, message)


def _plain_message(sender: str, recipient: str, subject: str, text: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message.set_content(text)
    return message


async def send_code_email(server: SmtpServer, sender: str, recipient: str, text: str) -> None:
    try:
        await deliver_email(server, _plain_message(sender, recipient, CODE_SUBJECT, text))
    except ChannelFailed as exc:
        raise CodeNotSent(exc.reason) from exc


async def send_reply_email(server: SmtpServer, sender: str, recipient: str, subject: str, text: str) -> None:
    try:
        await deliver_email(server, _plain_message(sender, recipient, subject, text))
    except ChannelFailed as exc:
        raise ReplyNotSent(exc.reason) from exc


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
