"""Telling clinics that something waits for them: planned with the dispatch that made it available,
sent by a job, retried with back-off, and every failure counted where operators see it.

Deduplication: a notice is a row keyed by (clinic, kind, period). For "available" the period is "since
the clinic's last pull", so the first dispatch after a pull notices the clinic and later ones before
its next pull add nothing. For "reminder" the period is a window as long as the reminder interval, so
an overdue clinic is reminded at most once per interval. The row commits with its outbox row (in
the dispatch's transaction), so a notice is neither lost nor sent twice by a re-run.

Idempotency of sending: each channel's success is recorded on the row as soon as it happens, so a
retry after a failure of one channel does not send through the other again.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import uuid
from datetime import timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email

from referral_broker.services.context import BrokerContext
from referral_broker.services.notice_channels import ChannelFailed, Notice, NoticeSender
from referral_broker.services.ports import JOB_NOTIFY
from referral_broker.store import audit, clinics, monitoring, notifications, outbox
from referral_broker.store.pool import Connection
from referral_protocol.errors import DomainError

log = logging.getLogger(__name__)


class ContactRefused(DomainError):
    """The e-mail address or webhook URL cannot be used; the message says why."""


class NotifyOutcome(StrEnum):
    SENT = "sent"
    NOTHING_TO_DO = "nothing-to-do"
    FAILED = "failed"  # gave up after the allowed tries; shown on the dashboard


class TransientNotifyFailure(Exception):
    """A channel failed this time; the job retries with back-off."""

    def __init__(self, attempts: int, reason: str) -> None:
        super().__init__(reason)
        self.attempts = attempts


# --- where a clinic is told -----------------------------------------------------------------------


def _checked_webhook(url: str) -> str:
    parts = urlsplit(url)
    if len(url) > 2000 or not parts.hostname:
        raise ContactRefused("the webhook must be a full URL like https://clinic.example/referral-broker")
    if parts.scheme == "https":
        return url
    loopback = parts.hostname == "localhost"
    with contextlib.suppress(ValueError):  # a name, not an address
        loopback = loopback or ipaddress.ip_address(parts.hostname).is_loopback
    if parts.scheme == "http" and loopback:
        return url  # a receiver on the broker's own machine; nothing crosses a network
    raise ContactRefused("the webhook must use https:// (plain http:// only to this machine)")


async def set_contact(ctx: BrokerContext, slug: str, *, email: str | None, webhook_url: str | None, actor: str) -> None:
    """Set where the clinic is told (an empty value removes that channel)."""
    clinic = await clinics.by_slug(ctx.pool, slug)
    if clinic is None:
        raise ContactRefused(f"no clinic called {slug!r} is enrolled")
    checked_email = None
    if email:
        try:
            checked_email = validate_email(email, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            raise ContactRefused(f"the e-mail address cannot be used: {exc}") from None
    checked_webhook = _checked_webhook(webhook_url) if webhook_url else None
    now = ctx.clock()
    async with ctx.pool.acquire() as conn, conn.transaction():
        await notifications.set_contact(conn, clinic.id, email=checked_email, webhook_url=checked_webhook, now=now)
        await audit.append(
            conn,
            at=now,
            actor=actor,
            action="clinic.contact_set",
            subject=slug,
            details={"email": checked_email is not None, "webhook": checked_webhook is not None},
        )


# --- planning -------------------------------------------------------------------------------------


async def plan_after_dispatch(ctx: BrokerContext, conn: Connection, clinic_ids: set[uuid.UUID]) -> list[uuid.UUID]:
    """Inside the dispatch's transaction: a notice for each clinic not yet told since its last pull."""
    if not clinic_ids:
        return []
    periods = await notifications.pull_periods(conn, list(clinic_ids))
    ids = list(periods)
    return await notifications.plan(
        conn,
        clinic_ids=ids,
        kind="available",
        periods=[periods[i] for i in ids],
        job=JOB_NOTIFY,
        now=ctx.clock(),
        with_email=ctx.settings.smtp_url is not None,
    )


async def ring(ctx: BrokerContext, notice_ids: list[uuid.UUID]) -> None:
    """After commit: ask a worker to send. A lost ring is made up for by the reconciler."""
    for notice_id in notice_ids:
        try:
            await ctx.doorbell.ring(JOB_NOTIFY, notice_id)
        except Exception:  # the outbox row is committed; the reconciler rings it
            log.warning("could not ring for notice %s; the reconciler will", notice_id)


async def remind_overdue_clinics(ctx: BrokerContext) -> int:
    """Plan a reminder for each active clinic with referrals waiting longer than the reminder interval
    that has not pulled in that time; at most one per clinic per interval. Returns how many were planned."""
    interval = ctx.settings.pull_reminder_after_seconds
    now = ctx.clock()
    overdue = await notifications.overdue_clinics(ctx.pool, now - timedelta(seconds=interval))
    if not overdue:
        return 0
    period = f"reminder:{int(now.timestamp()) // interval}"
    async with ctx.pool.acquire() as conn, conn.transaction():
        planned = await notifications.plan(
            conn,
            clinic_ids=[o.clinic_id for o in overdue],
            kind="reminder",
            periods=[period] * len(overdue),
            job=JOB_NOTIFY,
            now=now,
            with_email=ctx.settings.smtp_url is not None,
        )
    await ring(ctx, planned)
    if planned:
        log.info("planned %d reminder(s) to clinics that have not pulled", len(planned))
    return len(planned)


# --- sending --------------------------------------------------------------------------------------


async def send_notice(ctx: BrokerContext, notice_id: uuid.UUID, sender: NoticeSender) -> NotifyOutcome:
    """Send one notice through each of the clinic's channels not yet done; retried by the job on failure."""
    attempts = await outbox.count_attempt_autocommit(ctx.pool, JOB_NOTIFY, notice_id)
    if attempts is None:
        return NotifyOutcome.NOTHING_TO_DO
    now = ctx.clock()
    found = await notifications.notification(ctx.pool, notice_id)
    if found is None or found.status != "pending":
        await outbox.finish(ctx.pool, JOB_NOTIFY, notice_id, now, NotifyOutcome.NOTHING_TO_DO.value)
        return NotifyOutcome.NOTHING_TO_DO
    if attempts > ctx.settings.notify_max_tries:
        await _give_up(ctx, notice_id, found.contact.slug, attempts - 1)
        return NotifyOutcome.FAILED
    contact = found.contact
    notice = Notice(str(found.id), found.kind, contact.slug, contact.name, now)
    failures: list[tuple[str, ChannelFailed]] = []
    if contact.email and found.email_sent_at is None and ctx.settings.smtp_url:
        try:
            await sender.email(contact.email, notice)
            await notifications.mark_channel_sent(ctx.pool, notice_id, "email", ctx.clock())
        except ChannelFailed as exc:
            failures.append(("email", exc))
    if contact.webhook_url and found.webhook_sent_at is None:
        try:
            await sender.webhook(contact.webhook_url, notice)
            await notifications.mark_channel_sent(ctx.pool, notice_id, "webhook", ctx.clock())
        except ChannelFailed as exc:
            failures.append(("webhook", exc))
    if failures:
        summary = "; ".join(f"{channel}: {failure.reason}" for channel, failure in failures)
        await notifications.record_failure(ctx.pool, notice_id, summary)
        for channel, failure in failures:
            await monitoring.count_failure(ctx.pool, f"notification_{channel}:{failure.reason}", now)
        raise TransientNotifyFailure(attempts, summary)
    async with ctx.pool.acquire() as conn, conn.transaction():
        await notifications.finish(conn, notice_id, NotifyOutcome.SENT.value, now)
        await outbox.finish(conn, JOB_NOTIFY, notice_id, now, NotifyOutcome.SENT.value)
    return NotifyOutcome.SENT


async def _give_up(ctx: BrokerContext, notice_id: uuid.UUID, slug: str, tries: int) -> None:
    now = ctx.clock()
    async with ctx.pool.acquire() as conn, conn.transaction():
        await notifications.finish(conn, notice_id, NotifyOutcome.FAILED.value, now)
        await outbox.finish(conn, JOB_NOTIFY, notice_id, now, NotifyOutcome.FAILED.value)
        await monitoring.count_failure(conn, "notification_gave_up", now)
        await audit.append(
            conn,
            at=now,
            actor="worker",
            action="notification.failed",
            subject=slug,
            details={"notification": str(notice_id), "tries": tries},
        )
    log.error("notice %s to clinic %s gave up after %d tries", notice_id, slug, tries)
