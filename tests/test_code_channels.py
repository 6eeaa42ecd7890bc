"""How one-time codes travel: SMTP, the HTTPS SMS gateway, the development outbox, and refusals."""

from __future__ import annotations

import stat
from pathlib import Path

import msgspec
import pytest
from msgspec.structs import replace

from referral_broker.services.code_channels import ConfiguredCodeSender, code_text
from referral_broker.services.ports import CodeNotSent
from referral_broker.services.settings import Settings
from tests.ops.notice_sinks import MailSink, WebhookReceiver, mail_sink, webhook  # noqa: F401 - fixtures

BASE = Settings.from_env({"DATABASE_URL": "postgresql://localhost/x"})


async def test_a_code_by_email_goes_through_smtp(mail_sink: MailSink) -> None:  # noqa: F811
    sender = ConfiguredCodeSender(replace(BASE, smtp_url=mail_sink.url, mail_from="broker@example.no"))
    await sender.send("email", "kari@example.no", "123456", 15)
    [mail] = mail_sink.messages
    assert (mail["To"], mail["From"]) == ("kari@example.no", "broker@example.no")
    body = mail.get_payload(decode=True)
    assert isinstance(body, bytes)
    assert "123456" in body.decode() and "15 minutes" in body.decode()
    mail_sink.refuse = True
    with pytest.raises(CodeNotSent) as refused:
        await sender.send("email", "kari@example.no", "123456", 15)
    assert refused.value.reason == "SMTP 451"


async def test_a_code_by_text_goes_to_the_gateway_with_its_token(webhook: WebhookReceiver) -> None:  # noqa: F811
    sender = ConfiguredCodeSender(replace(BASE, sms_url=webhook.url, sms_token="gateway-token"))
    await sender.send("phone", "+4741234567", "654321", 15)
    [request] = webhook.received
    assert request.headers["authorization"] == "Bearer gateway-token"
    assert msgspec.json.decode(request.body) == {"to": "+4741234567", "text": code_text("654321", 15)}
    webhook.status = 500
    with pytest.raises(CodeNotSent) as refused:
        await sender.send("phone", "+4741234567", "654321", 15)
    assert refused.value.reason == "SMS gateway HTTP 500"
    unreachable = ConfiguredCodeSender(replace(BASE, sms_url="http://127.0.0.1:9/none"))
    with pytest.raises(CodeNotSent):
        await unreachable.send("phone", "+4741234567", "654321", 15)


async def test_the_development_outbox_writes_private_files(tmp_path: Path) -> None:
    sender = ConfiguredCodeSender(replace(BASE, dev_outbox=tmp_path / "outbox"))
    assert sender.can_send("email") and sender.can_send("phone")
    await sender.send("email", "kari@example.no", "111111", 15)
    await sender.send("phone", "+4741234567", "222222", 15)
    files = sorted((tmp_path / "outbox").iterdir())
    assert [f.suffixes[-2:] for f in files] == [[".email", ".txt"], [".sms", ".txt"]]
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert "111111" in files[0].read_text() and "222222" in files[1].read_text()


async def test_a_channel_that_is_not_configured_refuses_plainly() -> None:
    sender = ConfiguredCodeSender(BASE)
    assert not sender.can_send("email") and not sender.can_send("phone")
    with pytest.raises(CodeNotSent, match="e-mail is not configured"):
        await sender.send("email", "kari@example.no", "123456", 15)
    with pytest.raises(CodeNotSent, match="text messages are not configured"):
        await sender.send("phone", "+4741234567", "123456", 15)
