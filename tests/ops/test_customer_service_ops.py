"""Customer service under /ops: operators read (audited, without personal data), answer by e-mail and close;
auditors see the list only; a closed message is deleted by the retention run after the configured days."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import msgspec
from litestar.testing import AsyncTestClient

from referral_broker.services import customer_service, retention
from referral_broker.services.context import BrokerContext
from referral_broker.web.ops.display import local_time
from tests.conftest import RecordingDoorbell
from tests.ops.conftest import BASE, Account, Clock, post_form, sign_in
from tests.ops.notice_sinks import MailSink

CANARY_TEXT = "Kanarifugl-spørsmål 4410 om ryggen min"
CANARY_EMAIL = "kanari.4410@example.no"
CANARY_ANSWER = "Kanarisvar 4410: vi har sjekket saken"


async def _message(broker: BrokerContext, *, reply: bool = True, language: str = "nb") -> uuid.UUID:
    written = customer_service.Written(CANARY_TEXT, CANARY_EMAIL if reply else None, "RB-7K2M9-Q4X8D")
    reference = await customer_service.receive(broker, written, language=language)
    found: uuid.UUID = await broker.pool.fetchval("SELECT id FROM customer_messages WHERE reference = $1", reference)
    return found


async def _events(broker: BrokerContext, action: str) -> list[dict[str, Any]]:
    rows = await broker.pool.fetch(
        "SELECT actor, subject, details::text AS details FROM audit_events WHERE action = $1 ORDER BY id", action
    )
    return [{"actor": r["actor"], "subject": r["subject"], "details": json.loads(r["details"])} for r in rows]


async def _audit_text(broker: BrokerContext) -> str:
    return str(
        await broker.pool.fetchval("SELECT coalesce(string_agg(row_to_json(e)::text, ' '), '') FROM audit_events e")
    )


async def test_the_list_shows_no_content_and_an_auditor_cannot_open_a_message(
    client: AsyncTestClient[Any], broker: BrokerContext, auditor: Account, clock: Clock
) -> None:
    message_id = await _message(broker)
    await sign_in(client, auditor, clock)
    listing = await client.get("/ops/messages")
    assert listing.status_code == 200
    reference = await broker.pool.fetchval("SELECT reference FROM customer_messages")
    assert reference in listing.text and "Only the operator role can open messages." in listing.text
    assert f'href="/ops/messages/{message_id}"' not in listing.text
    for canary in ("Kanari", "kanari", "4410", "7K2M9"):
        assert canary not in listing.text
    refused = await client.get(f"/ops/messages/{message_id}")
    assert refused.status_code == 403
    assert "Kanari" not in refused.text and "kanari" not in refused.text
    assert await _events(broker, "customer_message.read") == []


async def test_an_operator_reads_a_message_and_each_reading_is_audited_without_its_content(
    client: AsyncTestClient[Any], broker: BrokerContext, operator: Account, clock: Clock
) -> None:
    message_id = await _message(broker)
    await sign_in(client, operator, clock)
    listing = await client.get("/ops/messages")
    assert f'href="/ops/messages/{message_id}"' in listing.text and "Kanari" not in listing.text
    assert await _events(broker, "customer_message.read") == []  # the list decrypts nothing

    for _ in range(2):
        page = await client.get(f"/ops/messages/{message_id}")
        assert page.status_code == 200
        assert CANARY_TEXT in page.text and CANARY_EMAIL in page.text and "RB-7K2M9-Q4X8D" in page.text

    read = await _events(broker, "customer_message.read")
    assert read == [{"actor": "operator:olga", "subject": str(message_id), "details": {}}] * 2
    audit = (await _audit_text(broker)).lower()
    for canary in ("kanari", "4410", "7k2m9"):
        assert canary not in audit


async def test_an_unknown_message_is_404_and_not_audited(
    client: AsyncTestClient[Any], broker: BrokerContext, operator: Account, clock: Clock
) -> None:
    await sign_in(client, operator, clock)
    page = await client.get(f"/ops/messages/{uuid.uuid4()}")
    assert page.status_code == 404
    assert await _events(broker, "customer_message.read") == []


def _with_mail(settings: Any, sink: MailSink) -> Any:
    return msgspec.structs.replace(settings, smtp_url=sink.url, mail_from="kundeservice@broker.test", submit_rate=0)


async def _ops_client(settings: Any, clock: Clock) -> AsyncTestClient[Any]:
    from referral_broker.web.app import create_app

    app = create_app(settings, doorbell_factory=lambda s: RecordingDoorbell(), clock=clock)
    return AsyncTestClient(app=app, base_url=BASE)


async def test_an_answer_goes_by_e_mail_to_the_reply_address_and_is_kept_only_encrypted(
    settings: Any, broker: BrokerContext, operator: Account, clock: Clock, mail_sink: MailSink
) -> None:
    message_id = await _message(broker, language="en")
    async with await _ops_client(_with_mail(settings, mail_sink), clock) as client:
        await sign_in(client, operator, clock)
        sent = await post_form(client, f"/ops/messages/{message_id}/answer", answer=CANARY_ANSWER)
        assert sent.status_code == 303, sent.text
        assert sent.headers["location"] == f"/ops/messages/{message_id}?done=answered"
        page = await client.get(sent.headers["location"])
        assert "The answer was sent." in page.text and CANARY_ANSWER in page.text and "by olga" in page.text

    assert len(mail_sink.messages) == 1
    mail = mail_sink.messages[0]
    reference = await broker.pool.fetchval("SELECT reference FROM customer_messages")
    assert mail["To"] == CANARY_EMAIL and mail["From"] == "kundeservice@broker.test"
    assert mail["Subject"] == f"Answer from customer service ({reference})"
    body = mail.get_payload(decode=True).decode()
    assert CANARY_ANSWER in body and reference in body and "https://broker.test/kontakt?lang=en" in body
    assert CANARY_TEXT not in body  # the question is not sent back over e-mail

    row = await broker.pool.fetchrow("SELECT answer_ct, answered_at FROM customer_messages")
    assert row["answered_at"] is not None and bytes(row["answer_ct"]).startswith(b"RBC2")
    assert b"Kanari" not in bytes(row["answer_ct"]) and b"4410" not in bytes(row["answer_ct"])
    answered = await _events(broker, "customer_message.answered")
    assert answered == [{"actor": "operator:olga", "subject": str(message_id), "details": {}}]
    assert "kanari" not in (await _audit_text(broker)).lower()


async def test_an_answer_the_mail_server_refuses_is_not_recorded_and_the_text_stays(
    settings: Any, broker: BrokerContext, operator: Account, clock: Clock, mail_sink: MailSink
) -> None:
    message_id = await _message(broker)
    mail_sink.refuse = True
    async with await _ops_client(_with_mail(settings, mail_sink), clock) as client:
        await sign_in(client, operator, clock)
        refused = await post_form(client, f"/ops/messages/{message_id}/answer", answer=CANARY_ANSWER)
    assert refused.status_code == 409
    assert "the e-mail was not sent (SMTP 451)" in refused.text
    assert f">{CANARY_ANSWER}</textarea>" in refused.text
    assert await broker.pool.fetchval("SELECT answer_ct FROM customer_messages") is None
    assert await _events(broker, "customer_message.answered") == []


async def test_a_message_without_a_reply_address_or_an_empty_answer_cannot_be_answered(
    settings: Any, broker: BrokerContext, operator: Account, clock: Clock, mail_sink: MailSink
) -> None:
    silent = await _message(broker, reply=False)
    answerable = await _message(broker)
    async with await _ops_client(_with_mail(settings, mail_sink), clock) as client:
        await sign_in(client, operator, clock)
        page = await client.get(f"/ops/messages/{silent}")
        assert "The sender gave no e-mail address" in page.text and 'name="answer"' not in page.text
        refused = await post_form(client, f"/ops/messages/{silent}/answer", answer="Hei")
        assert refused.status_code == 409 and "gave no e-mail address" in refused.text
        empty = await post_form(client, f"/ops/messages/{answerable}/answer", answer="  ")
        assert empty.status_code == 422 and "Write an answer before sending." in empty.text
    assert mail_sink.messages == []


async def test_an_auditor_can_neither_answer_nor_close(
    client: AsyncTestClient[Any], broker: BrokerContext, auditor: Account, clock: Clock
) -> None:
    message_id = await _message(broker)
    await sign_in(client, auditor, clock)
    assert (await post_form(client, f"/ops/messages/{message_id}/answer", answer="Hei")).status_code == 403
    assert (await post_form(client, f"/ops/messages/{message_id}/close")).status_code == 403
    assert await broker.pool.fetchval("SELECT closed_at FROM customer_messages") is None


async def test_a_closed_message_is_deleted_by_the_retention_run_after_the_configured_days(
    client: AsyncTestClient[Any], broker: BrokerContext, operator: Account, clock: Clock
) -> None:
    message_id = await _message(broker)
    kept_open = await _message(broker)
    await sign_in(client, operator, clock)
    closed = await post_form(client, f"/ops/messages/{message_id}/close")
    assert closed.status_code == 303 and closed.headers["location"] == "/ops/messages?done=closed"
    assert (await post_form(client, f"/ops/messages/{message_id}/close")).status_code == 409  # once
    closed_at = await broker.pool.fetchval("SELECT closed_at FROM customer_messages WHERE id = $1", message_id)
    assert closed_at == clock.now.replace(microsecond=closed_at.microsecond)
    listing = await client.get(closed.headers["location"])
    assert "The message is closed." in listing.text
    deleted_after = local_time(closed_at + timedelta(days=broker.settings.customer_service_retention_days))
    assert f'<td class="nowrap">{deleted_after}</td>' in listing.text
    assert [e["subject"] for e in await _events(broker, "customer_message.closed")] == [str(message_id)]

    days = broker.settings.customer_service_retention_days
    assert days == 30
    before = await retention.anonymise_expired(broker, now=closed_at + timedelta(days=days) - timedelta(minutes=1))
    assert before.deleted_customer_messages == 0
    assert await broker.pool.fetchval("SELECT count(*) FROM customer_messages") == 2

    after = await retention.anonymise_expired(broker, now=closed_at + timedelta(days=days, minutes=1))
    assert after.deleted_customer_messages == 1
    left = await broker.pool.fetch("SELECT id FROM customer_messages")
    assert [r["id"] for r in left] == [kept_open]  # an open message is never deleted, however old
    runs = await _events(broker, "retention.run")
    assert [r["details"]["deleted_customer_messages"] for r in runs] == [0, 1]
    again = await retention.anonymise_expired(broker, now=closed_at + timedelta(days=days, minutes=2))
    assert again.deleted_customer_messages == 0


async def test_the_retention_period_follows_the_setting(settings: Any, broker: BrokerContext) -> None:
    message_id = await _message(broker)
    await customer_service.close(broker, message_id, actor="test")
    closed_at = await broker.pool.fetchval("SELECT closed_at FROM customer_messages")
    short = msgspec.structs.replace(broker.settings, customer_service_retention_days=2)
    quick = BrokerContext(short, broker.pool, broker.keys, broker.doorbell, broker.clock)
    assert (await retention.anonymise_expired(quick, now=closed_at + timedelta(days=1))).deleted_customer_messages == 0
    assert (await retention.anonymise_expired(quick, now=closed_at + timedelta(days=2))).deleted_customer_messages == 1


async def test_metrics_count_messages_by_state_and_show_nothing_of_them(
    client: AsyncTestClient[Any], broker: BrokerContext
) -> None:
    first = await _message(broker)
    await _message(broker, reply=False)
    await customer_service.close(broker, first, actor="test")
    scraped = await client.get("/metrics")
    assert scraped.status_code == 200
    assert 'referral_broker_customer_messages{state="open"} 1.0' in scraped.text
    assert 'referral_broker_customer_messages{state="closed"} 1.0' in scraped.text
    reference = await broker.pool.fetchval("SELECT reference FROM customer_messages LIMIT 1")
    for hidden in ("Kanari", "kanari", "4410", "7K2M9", reference):
        assert hidden not in scraped.text


async def test_without_smtp_the_answer_goes_to_the_dev_outbox(
    settings: Any, broker: BrokerContext, tmp_path: Any
) -> None:
    from referral_broker.adapters.configured import configured_reply_sender

    outbox = tmp_path / "outbox"
    sender = configured_reply_sender(msgspec.structs.replace(settings, smtp_url=None, dev_outbox=outbox))
    message_id = await _message(broker, language="nn")
    await customer_service.answer(broker, message_id, CANARY_ANSWER, by="olga", actor="operator:olga", sender=sender)
    [written] = list(outbox.iterdir())
    text = written.read_text()
    assert text.startswith(f"To: {CANARY_EMAIL}\n") and "Subject: Svar frå kundeservice (KS-" in text
    assert CANARY_ANSWER in text and "/kontakt?lang=nn" in text


class _SlowSender:
    """A mail server that takes a moment, so two answers overlap."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send_reply(self, recipient: str, subject: str, text: str) -> None:
        import asyncio

        await asyncio.sleep(0.2)
        self.sent.append(text)


async def test_two_operators_answering_at_once_both_send_and_both_answers_are_kept(broker: BrokerContext) -> None:
    import asyncio

    message_id = await _message(broker)
    sender = _SlowSender()
    await asyncio.gather(
        *(
            customer_service.answer(
                broker, message_id, f"Svar nummer {i}", by=f"op{i}", actor=f"operator:op{i}", sender=sender
            )
            for i in range(2)
        )
    )
    assert len(sender.sent) == 2
    opened = await customer_service.read(broker, message_id, actor="test")
    assert sorted(a.text for a in opened.answers) == ["Svar nummer 0", "Svar nummer 1"]
    assert len(await _events(broker, "customer_message.answered")) == 2


async def test_the_retention_command_deletes_closed_messages_and_says_how_many(broker: BrokerContext) -> None:
    """`referral-broker retention run`, as cron or an operator runs it, with the period from its environment."""
    import asyncio
    import os

    from tests.processes import program

    message_id = await _message(broker)
    await customer_service.close(broker, message_id, actor="test")
    closed_at = await broker.pool.fetchval("SELECT closed_at FROM customer_messages")
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": broker.settings.database_url,
        "REFERRAL_BROKER_KEYS_DIR": str(broker.settings.keys_dir),
        "REFERRAL_BROKER_CUSTOMER_SERVICE_RETENTION_DAYS": "7",
        **{k: v for k, v in os.environ.items() if k.startswith("COVERAGE_") or k == "PYTHONPATH"},
    }

    async def run(after: timedelta) -> str:
        now = (closed_at + after).isoformat()
        args = [program("referral-broker"), "retention", "run", "--now", now]
        proc = await asyncio.create_subprocess_exec(*args, env=env, stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        assert proc.returncode == 0
        return out.decode()

    assert "0 closed customer-service message(s) deleted" in await run(timedelta(days=6, hours=23))
    assert await broker.pool.fetchval("SELECT count(*) FROM customer_messages") == 1
    assert "1 closed customer-service message(s) deleted" in await run(timedelta(days=7, minutes=1))
    assert await broker.pool.fetchval("SELECT count(*) FROM customer_messages") == 0


async def test_the_dashboard_flags_open_messages(
    client: AsyncTestClient[Any], broker: BrokerContext, operator: Account, clock: Clock
) -> None:
    await sign_in(client, operator, clock)
    assert "customer-service message" not in (await client.get("/ops")).text
    first = await _message(broker)
    await _message(broker)
    assert "2 customer-service messages are open: see Customer service." in (await client.get("/ops")).text
    await customer_service.close(broker, first, actor="test")
    board = await client.get("/ops", headers={"accept-language": "nb"})
    assert "1 melding til kundeservice er åpen: se Kundeservice." in board.text
