"""What operators watch: counts and ages of deliveries per clinic, time series over the last day, the
worker's heartbeat, the outbox's lag and failure counters. Numbers, ids and slugs only — never content."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from referral_broker.store.pool import Executor


@dataclass(frozen=True)
class ClinicDelivery:
    """One clinic's deliveries at a glance."""

    slug: str
    name: str
    status: str
    last_pull_at: datetime | None
    waiting_dispatch: int  # queued or failed
    in_inbox: int  # available
    oldest_unacknowledged_at: datetime | None  # submission time of the oldest delivery still open
    oldest_in_inbox_at: datetime | None  # when the oldest delivery in its inbox was made available
    failed: int
    dead: int
    pending_keys: int
    notifications_failed: int
    notifications_retrying: int
    has_email: bool
    has_webhook: bool


async def clinic_deliveries(conn: Executor) -> list[ClinicDelivery]:
    rows = await conn.fetch(
        """SELECT c.slug, c.name, c.status, c.last_pull_at,
                  count(d.id) FILTER (WHERE d.status IN ('queued', 'failed')) AS waiting_dispatch,
                  count(d.id) FILTER (WHERE d.status = 'available') AS in_inbox,
                  min(d.created_at) AS oldest_unacknowledged_at,
                  min(d.dispatched_at) FILTER (WHERE d.status = 'available') AS oldest_in_inbox_at,
                  count(d.id) FILTER (WHERE d.status = 'failed') AS failed,
                  count(d.id) FILTER (WHERE d.status = 'dead') AS dead,
                  (SELECT count(*) FROM clinic_keys k WHERE k.clinic_id = c.id AND k.state = 'pending')
                      AS pending_keys,
                  (SELECT count(*) FROM clinic_notifications n WHERE n.clinic_id = c.id AND n.status = 'failed')
                      AS notifications_failed,
                  (SELECT count(*) FROM clinic_notifications n
                    WHERE n.clinic_id = c.id AND n.status = 'pending' AND n.failures > 0) AS notifications_retrying,
                  coalesce(bool_or(cc.email IS NOT NULL), false) AS has_email,
                  coalesce(bool_or(cc.webhook_url IS NOT NULL), false) AS has_webhook
           FROM clinics c
           LEFT JOIN deliveries d ON d.clinic_id = c.id AND d.status IN ('queued', 'failed', 'available', 'dead')
           LEFT JOIN clinic_contacts cc ON cc.clinic_id = c.id
           GROUP BY c.id
           ORDER BY c.slug"""
    )
    return [ClinicDelivery(**dict(r)) for r in rows]


@dataclass(frozen=True)
class HourCounts:
    hour: datetime
    submitted: int
    dispatched: int
    acknowledged: int
    latency_p50: float | None  # seconds from submission to the clinic's inbox, of dispatches in this hour
    latency_p95: float | None


async def last_day_by_hour(conn: Executor, now: datetime) -> list[HourCounts]:
    """24 hourly buckets ending with the current hour, of live rows (an anonymised row's times are cut to the
    day, and the partial time indexes leave it out)."""
    rows = await conn.fetch(
        """WITH hours AS (
               SELECT generate_series(date_trunc('hour', $1::timestamptz) - interval '23 hours',
                                      date_trunc('hour', $1::timestamptz), interval '1 hour') AS hour
           ), dispatched AS (
               SELECT date_trunc('hour', dispatched_at) AS hour,
                      extract(epoch FROM dispatched_at - created_at)::float8 AS seconds
               FROM deliveries
               WHERE dispatched_at >= date_trunc('hour', $1::timestamptz) - interval '23 hours'
                 AND anonymised_at IS NULL
           )
           SELECT h.hour,
                  (SELECT count(*) FROM referrals r
                    WHERE r.created_at >= h.hour AND r.created_at < h.hour + interval '1 hour'
                      AND r.anonymised_at IS NULL) AS submitted,
                  (SELECT count(*) FROM dispatched x WHERE x.hour = h.hour) AS dispatched,
                  (SELECT count(*) FROM deliveries d
                    WHERE d.acknowledged_at >= h.hour AND d.acknowledged_at < h.hour + interval '1 hour'
                      AND d.anonymised_at IS NULL) AS acknowledged,
                  (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x.seconds) FROM dispatched x
                    WHERE x.hour = h.hour) AS latency_p50,
                  (SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY x.seconds) FROM dispatched x
                    WHERE x.hour = h.hour) AS latency_p95
           FROM hours h ORDER BY h.hour""",
        now,
    )
    return [HourCounts(**dict(r)) for r in rows]


@dataclass(frozen=True)
class DeadDelivery:
    id: uuid.UUID
    clinic: str
    created_at: datetime
    updated_at: datetime
    attempts: int
    last_error: str | None


async def dead_deliveries(conn: Executor, limit: int = 100) -> list[DeadDelivery]:
    rows = await conn.fetch(
        """SELECT d.id, c.slug AS clinic, d.created_at, d.updated_at, d.attempts, d.last_error
           FROM deliveries d JOIN clinics c ON c.id = d.clinic_id
           WHERE d.status = 'dead' ORDER BY d.updated_at DESC, d.id LIMIT $1""",
        limit,
    )
    return [DeadDelivery(**dict(r)) for r in rows]


@dataclass(frozen=True)
class QueueState:
    outbox_pending: int
    oldest_due_at: datetime | None  # the oldest due, unfinished outbox row: the reconciler's lag


async def queue_state(conn: Executor, now: datetime) -> QueueState:
    row = await conn.fetchrow(
        """SELECT count(*) AS outbox_pending, min(due_at) FILTER (WHERE due_at <= $1) AS oldest_due_at
           FROM outbox WHERE done_at IS NULL""",
        now,
    )
    assert row is not None  # noqa: S101 - an aggregate always returns one row
    return QueueState(int(row["outbox_pending"]), row["oldest_due_at"])


# --- the worker's heartbeat -----------------------------------------------------------------------


@dataclass(frozen=True)
class Heartbeat:
    worker: str
    beat_at: datetime


async def record_heartbeat(conn: Executor, worker: str, now: datetime) -> None:
    await conn.execute(
        """INSERT INTO worker_heartbeats (worker, beat_at) VALUES ($1, $2)
           ON CONFLICT (worker) DO UPDATE SET beat_at = greatest(worker_heartbeats.beat_at, excluded.beat_at)""",
        worker,
        now,
    )


async def forget_heartbeats_before(conn: Executor, before: datetime) -> int:
    result = await conn.execute("DELETE FROM worker_heartbeats WHERE beat_at < $1", before)
    return int(result.split()[-1])


async def heartbeats(conn: Executor, limit: int = 10) -> list[Heartbeat]:
    rows = await conn.fetch("SELECT worker, beat_at FROM worker_heartbeats ORDER BY beat_at DESC LIMIT $1", limit)
    return [Heartbeat(r["worker"], r["beat_at"]) for r in rows]


# --- failure counters -----------------------------------------------------------------------------


async def count_failure(conn: Executor, reason: str, now: datetime) -> None:
    await conn.execute(
        """INSERT INTO failure_counts (reason, total, last_at) VALUES ($1, 1, $2)
           ON CONFLICT (reason) DO UPDATE SET total = failure_counts.total + 1,
                                              last_at = greatest(failure_counts.last_at, excluded.last_at)""",
        reason,
        now,
    )


@dataclass(frozen=True)
class FailureCount:
    reason: str
    total: int
    last_at: datetime


async def failure_counts(conn: Executor) -> list[FailureCount]:
    rows = await conn.fetch("SELECT reason, total, last_at FROM failure_counts ORDER BY reason")
    return [FailureCount(r["reason"], int(r["total"]), r["last_at"]) for r in rows]


# --- totals for /metrics --------------------------------------------------------------------------


@dataclass(frozen=True)
class Totals:
    submissions: int
    dispatches: int
    acknowledgements: int
    retention_anonymised: int  # referrals anonymised by retention runs
    retention_expired_deliveries: int  # undelivered deliveries expired by them
    notifications_sent: int
    notifications_failed: int


async def totals(conn: Executor) -> Totals:
    row = await conn.fetchrow(
        """SELECT (SELECT count(*) FROM referrals) AS submissions,
                  (SELECT count(*) FROM deliveries WHERE dispatched_at IS NOT NULL) AS dispatches,
                  (SELECT count(*) FROM deliveries WHERE acknowledged_at IS NOT NULL) AS acknowledgements,
                  (SELECT coalesce(sum((details ->> 'anonymised')::bigint), 0) FROM audit_events
                    WHERE action = 'retention.run' AND jsonb_typeof(details -> 'anonymised') = 'number')
                      AS retention_anonymised,
                  (SELECT coalesce(sum((details ->> 'expired_deliveries')::bigint), 0) FROM audit_events
                    WHERE action = 'retention.run' AND jsonb_typeof(details -> 'expired_deliveries') = 'number')
                      AS retention_expired_deliveries,
                  (SELECT count(*) FROM clinic_notifications WHERE status = 'sent') AS notifications_sent,
                  (SELECT count(*) FROM clinic_notifications WHERE status = 'failed') AS notifications_failed"""
    )
    assert row is not None  # noqa: S101 - a SELECT without FROM returns one row
    return Totals(**{k: int(v) for k, v in dict(row).items()})


@dataclass(frozen=True)
class LatencyHistogram:
    """Cumulative counts of submit-to-inbox seconds at or below each bound, as Prometheus expects."""

    bounds: list[float]
    cumulative: list[int]
    count: int
    total_seconds: float


async def latency_histogram(conn: Executor, bounds: list[float]) -> LatencyHistogram:
    row = await conn.fetchrow(
        """WITH latency AS MATERIALIZED (
               SELECT extract(epoch FROM dispatched_at - created_at)::float8 AS seconds
               FROM deliveries WHERE dispatched_at IS NOT NULL
           )
           SELECT (SELECT count(*) FROM latency) AS count,
                  (SELECT coalesce(sum(seconds), 0) FROM latency) AS total_seconds,
                  (SELECT array_agg((SELECT count(*) FROM latency WHERE seconds <= b) ORDER BY b)
                     FROM unnest($1::float8[]) AS b) AS cumulative""",
        bounds,
    )
    assert row is not None  # noqa: S101 - a SELECT without FROM returns one row
    return LatencyHistogram(
        bounds=sorted(bounds),
        cumulative=[int(n) for n in row["cumulative"] or []],
        count=int(row["count"]),
        total_seconds=float(row["total_seconds"]),
    )


async def audit_events_of(conn: Executor, action: str, limit: int) -> list[dict[str, Any]]:
    """The latest events of one action (the dashboard shows the last retention runs this way)."""
    rows = await conn.fetch(
        "SELECT id, at, actor, details FROM audit_events WHERE action = $1 ORDER BY id DESC LIMIT $2", action, limit
    )
    return [dict(r) for r in rows]
