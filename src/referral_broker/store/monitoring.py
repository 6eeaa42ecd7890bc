"""What operators watch: counts and ages of deliveries per clinic, time series over the last day, the
worker's heartbeat, the outbox's lag and failure counters. Numbers, ids and slugs only — never content."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from referral_broker.domain.delivery import DeliveryStatus
from referral_broker.store.pool import Executor


@dataclass(frozen=True)
class ClinicDelivery:
    """One clinic's deliveries at a glance."""

    slug: str
    name: str
    organisation_number: str | None
    her_id: str | None
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
        """SELECT c.slug, c.name, c.organisation_number, c.her_id, c.status, c.last_pull_at,
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


async def _counted(conn: Executor) -> dict[str, float]:
    """The counters the triggers of migration 0010 keep: one small row per backend and name, summed."""
    rows = await conn.fetch("SELECT name, sum(value) AS value FROM metric_counts GROUP BY name")
    return {r["name"]: float(r["value"]) for r in rows}


async def totals(conn: Executor) -> Totals:
    counted = await _counted(conn)
    runs = await conn.fetchrow(
        """SELECT coalesce(sum((details ->> 'anonymised')::bigint)
                            FILTER (WHERE jsonb_typeof(details -> 'anonymised') = 'number'), 0) AS anonymised,
                  coalesce(sum((details ->> 'expired_deliveries')::bigint)
                            FILTER (WHERE jsonb_typeof(details -> 'expired_deliveries') = 'number'), 0) AS expired
           FROM audit_events WHERE action = 'retention.run'"""
    )  # one event a retention run (audit_events_by_action), not one a referral
    assert runs is not None  # noqa: S101 - an aggregate always returns one row
    return Totals(
        submissions=round(counted.get("submissions", 0)),
        dispatches=round(counted.get("dispatches", 0)),
        acknowledgements=round(counted.get("acknowledgements", 0)),
        retention_anonymised=int(runs["anonymised"]),
        retention_expired_deliveries=int(runs["expired"]),
        notifications_sent=round(counted.get("notifications:sent", 0)),
        notifications_failed=round(counted.get("notifications:failed", 0)),
    )


async def deliveries_by_status(conn: Executor) -> dict[str, int]:
    """Deliveries in each status now (a gauge kept by the triggers), every status named, 0 included."""
    counted = await _counted(conn)
    return {s.value: round(counted.get(f"deliveries:{s.value}", 0)) for s in DeliveryStatus}


@dataclass(frozen=True)
class LatencyHistogram:
    """Cumulative counts of submit-to-inbox seconds at or below each bound, as Prometheus expects."""

    bounds: list[float]
    cumulative: list[int]
    count: int
    total_seconds: float


async def latency_histogram(conn: Executor) -> LatencyHistogram:
    """Each delivery counted once, when it was made available, from its exact times (the sweep's later
    cut to the day does not move it); the bounds are the database's own (`metric_latency_bounds()`)."""
    bounds = sorted(float(b) for b in await conn.fetchval("SELECT metric_latency_bounds()"))
    counted = await _counted(conn)
    in_bucket = {float(k.removeprefix("latency:")): v for k, v in counted.items() if k.startswith("latency:")}
    cumulative, running = [], 0.0
    for bound in bounds:
        running += in_bucket.get(bound, 0.0)
        cumulative.append(round(running))
    return LatencyHistogram(
        bounds=bounds,
        cumulative=cumulative,
        count=round(sum(in_bucket.values())),
        total_seconds=counted.get("latency_seconds", 0.0),
    )


async def fold_metric_counts(conn: Executor) -> int:
    """Fold the counter rows of backends that have gone into backend 0; returns how many rows went.

    Only a live backend writes its own rows, so a gone one's rows are still; should a new backend with
    the same process id count meanwhile, either its UPSERT waits for this DELETE and inserts anew, or
    the DELETE waits for it and takes its value along: nothing is lost or counted twice."""
    folded = await conn.fetchval(
        """WITH gone AS (
               DELETE FROM metric_counts
               WHERE backend <> 0 AND backend NOT IN (SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL)
               RETURNING name, value
           ), folded AS (
               INSERT INTO metric_counts AS m (backend, name, value)
               SELECT 0, name, sum(value) FROM gone GROUP BY name ORDER BY name
               ON CONFLICT (backend, name) DO UPDATE SET value = m.value + excluded.value
           )
           SELECT count(*) FROM gone"""
    )
    return int(folded)


async def audit_events_of(conn: Executor, action: str, limit: int) -> list[dict[str, Any]]:
    """The latest events of one action (the dashboard shows the last retention runs this way)."""
    rows = await conn.fetch(
        "SELECT id, at, actor, details FROM audit_events WHERE action = $1 ORDER BY id DESC LIMIT $2", action, limit
    )
    return [dict(r) for r in rows]
