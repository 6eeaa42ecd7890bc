"""The senders the settings choose: what the composition roots hand to the services' ports."""

from __future__ import annotations

from referral_broker.adapters.dev_outbox import DevOutbox
from referral_broker.adapters.sms import HttpSmsGateway, SmsGateway
from referral_broker.adapters.smtp import SmtpServer, send_code_email, send_notice_email, send_reply_email
from referral_broker.adapters.webhook import post_webhook
from referral_broker.services.code_channels import SUBJECT, code_text
from referral_broker.services.notice_channels import Notice
from referral_broker.services.ports import CodeNotSent, CodeSender, ReplyNotSent, ReplySender
from referral_broker.services.settings import Settings
from referral_protocol.envelope import BrokerSigner


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


class ConfiguredReplySender:
    """Customer-service answers by e-mail through SMTP, or (development) the dev outbox."""

    def __init__(self, settings: Settings) -> None:
        self._smtp = SmtpServer.from_url(settings.smtp_url) if settings.smtp_url else None
        self._mail_from = settings.mail_from
        self._dev = DevOutbox(settings.dev_outbox) if settings.dev_outbox else None

    @property
    def can_send(self) -> bool:
        return self._smtp is not None or self._dev is not None

    async def send_reply(self, recipient: str, subject: str, text: str) -> None:
        if self._smtp is not None:
            await send_reply_email(self._smtp, self._mail_from, recipient, subject, text)
            return
        if self._dev is None:
            raise ReplyNotSent("e-mail is not configured")
        try:
            await self._dev.deliver("email", recipient, f"Subject: {subject}\n\n{text}")
        except CodeNotSent as exc:
            raise ReplyNotSent(exc.reason) from exc


def configured_reply_sender(settings: Settings) -> ReplySender:
    return ConfiguredReplySender(settings)


class ConfiguredNoticeSender:
    """A clinic notice by e-mail through the configured SMTP server, and by the webhook signed with `signer`."""

    def __init__(self, settings: Settings, signer: BrokerSigner) -> None:
        self._settings = settings
        self._signer = signer

    async def email(self, recipient: str, notice: Notice) -> None:
        settings = self._settings
        if settings.smtp_url is None:  # the service asks only when e-mail is configured
            raise RuntimeError("a notice e-mail was asked for without an SMTP server configured")
        server = SmtpServer.from_url(settings.smtp_url)
        await send_notice_email(server, settings.mail_from, recipient, notice, settings.public_url)

    async def webhook(self, url: str, notice: Notice) -> None:
        await post_webhook(url, self._signer, notice)
