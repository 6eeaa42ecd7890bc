"""Clinic notices: e-mail through a local SMTP sink and a signed webhook to a local receiver, with no
patient data in either; deduplicated per unpulled batch; retried with back-off, failures counted and
shown; reminders to clinics that do not pull."""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid
from typing import Any

import msgspec
import pytest
from arq import Retry
from nacl.signing import VerifyKey

from referral_broker.adapters.configured import ConfiguredNoticeSender
from referral_broker.adapters.webhook import SIGNATURE_HEADER, WEBHOOK_DOMAIN
from referral_broker.queue import notification_jobs
from referral_broker.services import clinic_inbox, dispatch, intake, monitoring, notifications
from referral_broker.services.context import BrokerContext
from referral_broker.services.notifications import ContactRefused, NotifyOutcome
from referral_broker.services.ports import JOB_NOTIFY
from referral_broker.store import clinics
from referral_broker.store import monitoring as monitoring_store
from referral_protocol.referral import Receipt, ReferralRequest
from referral_protocol.validation import decode_json
from tests.conftest import RecordingDoorbell, enrol_clinic, referral_json
from tests.ops.conftest import Clock
from tests.ops.notice_sinks import MailSink, WebhookReceiver

CANARIES = {
    "name": "Zyxcanary Nordmann",
    "email": "zyx.canary.mail@example.no",
    "phone": "+4741239871",
    "description": "CANARY-NEED-7F3A knee pain after running",
}


@pytest.fixture
def ctx(broker: BrokerContext, mail_sink: MailSink, clock: Clock) -> BrokerContext:
    settings = msgspec.structs.replace(broker.settings, smtp_url=mail_sink.url, mail_from="varsel@broker.test")
    return dataclasses.replace(broker, settings=settings, clock=clock, doorbell=RecordingDoorbell())


async def _submit(ctx: BrokerContext, slugs: list[str], **patient: str) -> Receipt:
    body = referral_json(slugs, description=patient.pop("description", "Vondt i ryggen"), **patient)
    return await intake.submit(ctx, decode_json(msgspec.json.encode(body), ReferralRequest))


async def _submit_and_dispatch(ctx: BrokerContext, slugs: list[str], **patient: str) -> Receipt:
    receipt = await _submit(ctx, slugs, **patient)
    rid = await ctx.pool.fetchval("SELECT id FROM referrals WHERE reference = $1", receipt.reference)
    assert await dispatch.dispatch_referral(ctx, rid) == dispatch.DispatchOutcome.DISPATCHED
    return receipt


async def _send(ctx: BrokerContext, notice: uuid.UUID) -> NotifyOutcome:
    """The notice job's work, through the senders the worker configures from the same settings."""
    return await notifications.send_notice(ctx, notice, ConfiguredNoticeSender(ctx.settings, ctx.keys.signer))


def _notices_rung(ctx: BrokerContext) -> list[uuid.UUID]:
    assert isinstance(ctx.doorbell, RecordingDoorbell)
    return [subject for job, subject in ctx.doorbell.rung if job == JOB_NOTIFY]


async def _pull(ctx: BrokerContext, slug: str) -> None:
    row = await clinics.by_slug(ctx.pool, slug)
    assert row is not None
    await clinic_inbox.list_inbox(ctx, row, 100)


async def test_clinic_is_told_by_email_and_signed_webhook_with_no_patient_data(
    ctx: BrokerContext, mail_sink: MailSink, webhook: WebhookReceiver
) -> None:
    await enrol_clinic(ctx, "klinikk-a")
    await notifications.set_contact(
        ctx, "klinikk-a", email="post@klinikk-a.no", webhook_url=webhook.url, actor="operator:olga"
    )
    receipt = await _submit_and_dispatch(ctx, ["klinikk-a"], **CANARIES)
    [notice] = _notices_rung(ctx)
    assert await _send(ctx, notice) == NotifyOutcome.SENT

    [mail] = mail_sink.messages
    assert mail["To"] == "post@klinikk-a.no" and mail["From"] == "varsel@broker.test"
    assert "New referrals are waiting" in mail["Subject"]
    assert "referral-clinic pull" in mail.get_payload(decode=True).decode()

    [hook] = webhook.received
    assert hook.path == "/referral-broker"
    assert json.loads(hook.body)["type"] == "referrals.available"
    fields = dict(part.strip().split("=", 1) for part in hook.headers[SIGNATURE_HEADER.lower()].split(","))
    assert fields["keyid"] == ctx.keys.signer.key_id
    VerifyKey(ctx.keys.signer.public_key).verify(
        WEBHOOK_DOMAIN + f"{fields['t']}.".encode() + hook.body, base64.b64decode(fields["ed25519"])
    )  # raises if the signature does not verify

    token = receipt.manage_url.rsplit("/", 1)[-1]
    everything = b"".join(mail_sink.raw) + hook.body + json.dumps(hook.headers).encode()
    for secret in [*CANARIES.values(), receipt.reference, token, "Kari", "1990-05-17", "physiotherapy"]:
        assert secret.encode() not in everything, secret
        assert secret.lower().encode() not in everything.lower(), secret
    # Sending again changes nothing: the outbox row is done.
    assert await _send(ctx, notice) == NotifyOutcome.NOTHING_TO_DO
    assert len(mail_sink.messages) == 1 and len(webhook.received) == 1


async def test_one_notice_per_clinic_until_it_pulls(ctx: BrokerContext, mail_sink: MailSink) -> None:
    await enrol_clinic(ctx, "klinikk-a")
    await enrol_clinic(ctx, "klinikk-b")  # no contact set: never told
    await notifications.set_contact(ctx, "klinikk-a", email="post@klinikk-a.no", webhook_url=None, actor="t")
    await _submit_and_dispatch(ctx, ["klinikk-a", "klinikk-b"])
    await _submit_and_dispatch(ctx, ["klinikk-a"])
    assert len(_notices_rung(ctx)) == 1
    assert await ctx.pool.fetchval("SELECT count(*) FROM clinic_notifications") == 1
    await _pull(ctx, "klinikk-a")
    await _submit_and_dispatch(ctx, ["klinikk-a"])
    await _submit_and_dispatch(ctx, ["klinikk-a"])
    notices = _notices_rung(ctx)
    assert len(notices) == 2
    for n in notices:
        await _send(ctx, n)
    assert len(mail_sink.messages) == 2
    # The outbox carries the notices like any job: the reconciler finds none due once they are sent.
    assert await ctx.pool.fetchval("SELECT count(*) FROM outbox WHERE job = $1 AND done_at IS NULL", JOB_NOTIFY) == 0


async def test_a_failing_channel_is_retried_with_backoff_counted_and_shown(
    ctx: BrokerContext, mail_sink: MailSink, webhook: WebhookReceiver
) -> None:
    await enrol_clinic(ctx, "klinikk-a")
    await notifications.set_contact(ctx, "klinikk-a", email="post@klinikk-a.no", webhook_url=webhook.url, actor="t")
    await _submit_and_dispatch(ctx, ["klinikk-a"])
    [notice] = _notices_rung(ctx)
    webhook.status = 500
    job_ctx: dict[str, Any] = {"broker": ctx, "job_try": 1}
    for attempt in (1, 2):
        job_ctx["job_try"] = attempt
        with pytest.raises(Retry) as retry:
            await notification_jobs.notify_clinic(job_ctx, str(notice))
        assert retry.value.defer_score is not None and retry.value.defer_score > 0  # back-off
    assert len(mail_sink.messages) == 1  # e-mail went out once; only the webhook is retried
    assert len(webhook.received) == 2
    counts = {f.reason: f.total for f in await monitoring_store.failure_counts(ctx.pool)}
    assert counts == {"notification_webhook:HTTP 500": 2}
    board = await monitoring.dashboard(ctx)
    assert board.clinics[0].delivery.notifications_retrying == 1
    assert any("will be retried" in f.text for f in board.flags)
    assert board.notice_troubles[0].last_error == "webhook: HTTP 500"

    webhook.status = 200
    assert await notification_jobs.notify_clinic(job_ctx, str(notice)) == "sent"
    assert len(mail_sink.messages) == 1 and len(webhook.received) == 3


async def test_a_notice_that_keeps_failing_is_given_up_audited_and_flagged(
    ctx: BrokerContext, mail_sink: MailSink
) -> None:
    ctx = dataclasses.replace(ctx, settings=msgspec.structs.replace(ctx.settings, notify_max_tries=2))
    await enrol_clinic(ctx, "klinikk-a")
    await notifications.set_contact(ctx, "klinikk-a", email="post@klinikk-a.no", webhook_url=None, actor="t")
    await _submit_and_dispatch(ctx, ["klinikk-a"])
    [notice] = _notices_rung(ctx)
    mail_sink.refuse = True
    for _ in range(2):
        with pytest.raises(notifications.TransientNotifyFailure):
            await _send(ctx, notice)
    assert await _send(ctx, notice) == NotifyOutcome.FAILED
    assert await ctx.pool.fetchval("SELECT status FROM clinic_notifications") == "failed"
    event = await ctx.pool.fetchrow("SELECT subject, details FROM audit_events WHERE action = 'notification.failed'")
    assert event["subject"] == "klinikk-a" and event["details"]["tries"] == 2
    counts = {f.reason: f.total for f in await monitoring_store.failure_counts(ctx.pool)}
    assert counts == {"notification_email:SMTP 451": 2, "notification_gave_up": 1}
    assert any("could not be delivered" in f.text for f in (await monitoring.dashboard(ctx)).flags)


async def test_an_unreachable_mail_server_is_a_counted_failure(ctx: BrokerContext) -> None:
    from tests.ops.notice_sinks import free_port

    ctx = dataclasses.replace(
        ctx, settings=msgspec.structs.replace(ctx.settings, smtp_url=f"smtp://127.0.0.1:{free_port()}")
    )
    await enrol_clinic(ctx, "klinikk-a")
    await notifications.set_contact(ctx, "klinikk-a", email="post@klinikk-a.no", webhook_url=None, actor="t")
    await _submit_and_dispatch(ctx, ["klinikk-a"])
    with pytest.raises(notifications.TransientNotifyFailure, match="email: SMTPConnect"):
        await _send(ctx, _notices_rung(ctx)[0])
    assert [f.reason for f in await monitoring_store.failure_counts(ctx.pool)] == [
        "notification_email:SMTPConnectError"
    ]


async def test_a_clinic_that_does_not_pull_is_reminded_once_per_interval(
    ctx: BrokerContext, mail_sink: MailSink, clock: Clock
) -> None:
    await enrol_clinic(ctx, "klinikk-a")
    await notifications.set_contact(ctx, "klinikk-a", email="post@klinikk-a.no", webhook_url=None, actor="t")
    await _submit_and_dispatch(ctx, ["klinikk-a"])
    job_ctx: dict[str, Any] = {"broker": ctx}
    assert await notification_jobs.remind_clinics(job_ctx) == 0  # nothing has waited long yet
    interval = ctx.settings.pull_reminder_after_seconds
    clock.advance(seconds=interval + 60)
    assert await notification_jobs.remind_clinics(job_ctx) == 1
    assert await notification_jobs.remind_clinics(job_ctx) == 0  # deduplicated within the interval
    reminder = _notices_rung(ctx)[-1]
    assert await _send(ctx, reminder) == NotifyOutcome.SENT
    assert "Reminder" in mail_sink.messages[-1]["Subject"]
    clock.advance(seconds=interval)
    assert await notification_jobs.remind_clinics(job_ctx) == 1  # the next interval: reminded again
    await _pull(ctx, "klinikk-a")
    clock.advance(seconds=interval)
    assert await notification_jobs.remind_clinics(job_ctx) == 0  # it pulled: no reminder


async def test_the_heartbeat_job_records_the_worker(ctx: BrokerContext) -> None:
    await notification_jobs.heartbeat({"broker": ctx})
    board = await monitoring.dashboard(ctx)
    assert not board.worker_stalled and board.heartbeats[0].worker == notification_jobs.worker_name()


async def test_contact_settings_are_checked(ctx: BrokerContext) -> None:
    await enrol_clinic(ctx, "klinikk-a")
    with pytest.raises(ContactRefused, match="https"):
        await notifications.set_contact(ctx, "klinikk-a", email=None, webhook_url="http://clinic.example/h", actor="t")
    with pytest.raises(ContactRefused, match="e-mail"):
        await notifications.set_contact(ctx, "klinikk-a", email="not an address", webhook_url=None, actor="t")
    with pytest.raises(ContactRefused, match="no clinic"):
        await notifications.set_contact(ctx, "nobody", email="a@b.no", webhook_url=None, actor="t")
    await notifications.set_contact(
        ctx, "klinikk-a", email="Post@Klinikk-A.no", webhook_url="https://klinikk-a.no/hook", actor="operator-cli"
    )
    event = await ctx.pool.fetchrow("SELECT actor, details FROM audit_events WHERE action = 'clinic.contact_set'")
    assert event["actor"] == "operator-cli" and event["details"] == {"email": True, "webhook": True}
