"""What operators watch: the dashboard's figures and flags, /metrics, the worker's heartbeat, and the
audit trail with its integrity check. Everything is read from PostgreSQL (and the queue's length from
Redis), so every server process shows the same numbers. Nothing here can show a referral's content
or a patient: the queries select counts, times, ids and slugs only."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from referral_broker import texts
from referral_broker.services.context import BrokerContext
from referral_broker.store import audit, customer_messages, monitoring, notifications
from referral_broker.store.audit import AuditEvent, BrokenLink
from referral_broker.store.monitoring import (
    ClinicDelivery,
    DeadDelivery,
    FailureCount,
    Heartbeat,
    HourCounts,
    LatencyHistogram,
    Totals,
)
from referral_broker.store.notifications import NotificationTrouble

#: The reconciler rings every 15 s; a due row older than this means it is not keeping up.
RECONCILER_LAG_ALERT = timedelta(seconds=60)


async def queue_depth(ctx: BrokerContext) -> int | None:
    """Jobs waiting in arq's queue in Redis; None when the doorbell cannot tell (or Redis is away)."""
    depth = getattr(ctx.doorbell, "queue_depth", None)
    if depth is None:
        return None
    value: int | None = await depth()
    return value


# --- the dashboard --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClinicWatch:
    delivery: ClinicDelivery
    overdue: bool  # referrals wait longer than the reminder interval and it has not pulled in that time


@dataclass(frozen=True)
class Flag:
    severity: str  # "alert" or "warning"
    key: str  # its text in the catalogues (`ops.flag.…`)
    values: dict[str, object] = field(default_factory=dict)
    count: int | None = None  # for a text with a plural

    def text_in(self, language: str) -> str:
        if self.count is None:
            return texts.text(language, self.key, **self.values)
        return texts.ntext(language, self.key, self.count, **self.values)

    @property
    def text(self) -> str:
        """In English, as the operators' pages were before they spoke bokmål too."""
        return self.text_in("en")


@dataclass(frozen=True)
class Dashboard:
    now: datetime
    clinics: list[ClinicWatch]
    last_day: list[HourCounts]
    dead: list[DeadDelivery]
    heartbeats: list[Heartbeat]
    worker_stalled: bool
    outbox_pending: int
    arq_depth: int | None
    reconciler_lag: timedelta | None
    retention_runs: list[dict[str, Any]]
    notice_troubles: list[NotificationTrouble]
    failures: list[FailureCount]
    email_configured: bool
    flags: list[Flag] = field(default_factory=list)
    open_customer_messages: int = 0


def _overdue(c: ClinicDelivery, since: datetime) -> bool:
    return (
        c.status == "active"
        and c.oldest_in_inbox_at is not None
        and c.oldest_in_inbox_at < since
        and (c.last_pull_at is None or c.last_pull_at < since)
    )


async def dashboard(ctx: BrokerContext) -> Dashboard:
    now = ctx.clock()
    reminder_after = timedelta(seconds=ctx.settings.pull_reminder_after_seconds)
    clinic_rows = await monitoring.clinic_deliveries(ctx.pool)
    watched = [ClinicWatch(c, _overdue(c, now - reminder_after)) for c in clinic_rows]
    beats = await monitoring.heartbeats(ctx.pool)
    stalled = not beats or now - beats[0].beat_at > timedelta(seconds=ctx.settings.worker_stall_after_seconds)
    queue = await monitoring.queue_state(ctx.pool, now)
    lag = now - queue.oldest_due_at if queue.oldest_due_at else None
    board = Dashboard(
        now=now,
        clinics=watched,
        last_day=await monitoring.last_day_by_hour(ctx.pool, now),
        dead=await monitoring.dead_deliveries(ctx.pool),
        heartbeats=beats,
        worker_stalled=stalled,
        outbox_pending=queue.outbox_pending,
        arq_depth=await queue_depth(ctx),
        reconciler_lag=lag,
        retention_runs=await monitoring.audit_events_of(ctx.pool, "retention.run", 5),
        notice_troubles=await notifications.troubled(ctx.pool, now - timedelta(days=7)),
        failures=await monitoring.failure_counts(ctx.pool),
        email_configured=ctx.settings.smtp_url is not None,
        open_customer_messages=(await customer_messages.counts(ctx.pool))["open"],
    )
    board.flags.extend(_flags(board, reminder_after))
    return board


def _flags(board: Dashboard, reminder_after: timedelta) -> list[Flag]:
    flags: list[Flag] = []
    if not board.heartbeats:
        flags.append(Flag("alert", "ops.flag.no_worker"))
    elif board.worker_stalled:
        flags.append(Flag("alert", "ops.flag.worker_stalled"))
    dead = sum(c.delivery.dead for c in board.clinics)
    if dead:
        flags.append(Flag("alert", "ops.flag.dead", count=dead))
    for c in board.clinics:
        if c.overdue:
            hours = f"{reminder_after.total_seconds() / 3600:g}"
            flags.append(Flag("alert", "ops.flag.not_pulling", {"clinic": c.delivery.slug, "hours": hours}))
    failed = sum(c.delivery.notifications_failed for c in board.clinics)
    if failed:
        flags.append(Flag("alert", "ops.flag.notices_failed", count=failed))
    retrying = sum(c.delivery.notifications_retrying for c in board.clinics)
    if retrying:
        flags.append(Flag("warning", "ops.flag.notices_retrying", count=retrying))
    if board.reconciler_lag is not None and board.reconciler_lag > RECONCILER_LAG_ALERT:
        flags.append(Flag("alert", "ops.flag.reconciler_lag"))
    if not board.email_configured and any(c.delivery.has_email for c in board.clinics):
        flags.append(Flag("warning", "ops.flag.email_off"))
    if board.open_customer_messages:
        flags.append(Flag("warning", "ops.flag.customer_messages", count=board.open_customer_messages))
    return flags


# --- /metrics -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricsSnapshot:
    totals: Totals
    deliveries_by_status: dict[str, int]
    failures: list[FailureCount]
    latency: LatencyHistogram
    outbox_pending: int
    arq_depth: int | None
    reconciler_lag_seconds: float
    heartbeat_age_seconds: float | None
    #: Customer-service messages by state (`open`, `closed`): counts only, never content.
    customer_messages: dict[str, int] = field(default_factory=dict)


async def metrics_snapshot(ctx: BrokerContext) -> MetricsSnapshot:
    now = ctx.clock()
    queue = await monitoring.queue_state(ctx.pool, now)
    beats = await monitoring.heartbeats(ctx.pool, 1)
    return MetricsSnapshot(
        totals=await monitoring.totals(ctx.pool),
        deliveries_by_status=await monitoring.deliveries_by_status(ctx.pool),
        failures=await monitoring.failure_counts(ctx.pool),
        latency=await monitoring.latency_histogram(ctx.pool),
        outbox_pending=queue.outbox_pending,
        arq_depth=await queue_depth(ctx),
        reconciler_lag_seconds=(now - queue.oldest_due_at).total_seconds() if queue.oldest_due_at else 0.0,
        heartbeat_age_seconds=(now - beats[0].beat_at).total_seconds() if beats else None,
        customer_messages=await customer_messages.counts(ctx.pool),
    )


# --- the worker's heartbeat -----------------------------------------------------------------------


async def record_heartbeat(ctx: BrokerContext, worker: str) -> None:
    """Called by a job that goes through the queue: a recent beat means jobs are being run."""
    now = ctx.clock()
    await monitoring.record_heartbeat(ctx.pool, worker, now)
    await monitoring.forget_heartbeats_before(ctx.pool, now - timedelta(days=1))
    await monitoring.fold_metric_counts(ctx.pool)  # the counter rows of connections since closed


# --- the audit trail ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilter:
    clinic: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None


async def audit_trail(ctx: BrokerContext, wanted: AuditFilter, limit: int = 200) -> list[AuditEvent]:
    return await audit.search(
        ctx.pool, clinic=wanted.clinic, action=wanted.action, since=wanted.since, until=wanted.until, limit=limit
    )


async def audit_actions(ctx: BrokerContext) -> list[str]:
    return await audit.actions(ctx.pool)


@dataclass(frozen=True)
class ChainCheck:
    checked: int
    broken: BrokenLink | None


async def check_audit_chain(ctx: BrokerContext) -> ChainCheck:
    async with ctx.pool.acquire() as conn:
        checked, broken = await audit.verify_chain(conn)
    return ChainCheck(checked, broken)
