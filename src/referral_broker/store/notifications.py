"""Clinic contact settings and the notices sent to clinics, each with its outbox row."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from referral_broker.store.pool import Connection, Executor


@dataclass(frozen=True)
class ClinicContact:
    clinic_id: uuid.UUID
    slug: str
    name: str
    status: str
    email: str | None
    webhook_url: str | None


async def set_contact(
    conn: Executor, clinic_id: uuid.UUID, *, email: str | None, webhook_url: str | None, now: datetime
) -> None:
    await conn.execute(
        """INSERT INTO clinic_contacts (clinic_id, email, webhook_url, updated_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (clinic_id) DO UPDATE SET email = excluded.email, webhook_url = excluded.webhook_url,
                                                 updated_at = excluded.updated_at""",
        clinic_id,
        email,
        webhook_url,
        now,
    )


async def plan(
    conn: Connection,
    *,
    clinic_ids: list[uuid.UUID],
    kind: str,
    periods: list[str],
    job: str,
    now: datetime,
    with_email: bool,
) -> list[uuid.UUID]:
    """Insert one notice per (clinic, period) not noticed yet, each with its outbox row; return the new ids.

    Only clinics that can be reached are noticed: a webhook is configured, or an e-mail address while
    the broker can send mail (`with_email`). A repeated call for the same period inserts nothing.
    """
    rows = await conn.fetch(
        """WITH wanted AS (
               SELECT w.clinic_id, w.period FROM unnest($1::uuid[], $2::text[]) AS w(clinic_id, period)
               JOIN clinic_contacts cc ON cc.clinic_id = w.clinic_id
               WHERE cc.webhook_url IS NOT NULL OR ($6 AND cc.email IS NOT NULL)
           ), inserted AS (
               INSERT INTO clinic_notifications (id, clinic_id, kind, period, created_at)
               SELECT gen_random_uuid(), clinic_id, $3, period, $4 FROM wanted
               ON CONFLICT (clinic_id, kind, period) DO NOTHING
               RETURNING id
           ), queued AS (
               INSERT INTO outbox (job, subject_id, due_at, created_at)
               SELECT $5, id, $4, $4 FROM inserted
           )
           SELECT id FROM inserted""",
        clinic_ids,
        periods,
        kind,
        now,
        job,
        with_email,
    )
    return [r["id"] for r in rows]


@dataclass(frozen=True)
class Notification:
    id: uuid.UUID
    kind: str
    status: str
    email_sent_at: datetime | None
    webhook_sent_at: datetime | None
    failures: int
    contact: ClinicContact


async def notification(conn: Executor, notification_id: uuid.UUID) -> Notification | None:
    row = await conn.fetchrow(
        """SELECT n.id, n.kind, n.status, n.email_sent_at, n.webhook_sent_at, n.failures,
                  c.id AS clinic_id, c.slug, c.name, c.status AS clinic_status, cc.email, cc.webhook_url
           FROM clinic_notifications n JOIN clinics c ON c.id = n.clinic_id
           LEFT JOIN clinic_contacts cc ON cc.clinic_id = c.id
           WHERE n.id = $1""",
        notification_id,
    )
    if row is None:
        return None
    return Notification(
        id=row["id"],
        kind=row["kind"],
        status=row["status"],
        email_sent_at=row["email_sent_at"],
        webhook_sent_at=row["webhook_sent_at"],
        failures=row["failures"],
        contact=ClinicContact(
            row["clinic_id"], row["slug"], row["name"], row["clinic_status"], row["email"], row["webhook_url"]
        ),
    )


async def mark_channel_sent(conn: Executor, notification_id: uuid.UUID, channel: str, now: datetime) -> None:
    column = {"email": "email_sent_at", "webhook": "webhook_sent_at"}[channel]
    await conn.execute(
        f"UPDATE clinic_notifications SET {column} = $2 WHERE id = $1 AND {column} IS NULL",  # noqa: S608 - fixed names
        notification_id,
        now,
    )


async def record_failure(conn: Executor, notification_id: uuid.UUID, error: str) -> None:
    await conn.execute(
        "UPDATE clinic_notifications SET failures = failures + 1, last_error = $2 WHERE id = $1",
        notification_id,
        error,
    )


async def finish(conn: Executor, notification_id: uuid.UUID, status: str, now: datetime) -> None:
    await conn.execute(
        "UPDATE clinic_notifications SET status = $2, finished_at = $3 WHERE id = $1 AND status = 'pending'",
        notification_id,
        status,
        now,
    )


@dataclass(frozen=True)
class NotificationTrouble:
    clinic: str
    kind: str
    status: str
    failures: int
    last_error: str | None
    created_at: datetime


async def troubled(conn: Executor, since: datetime, limit: int = 20) -> list[NotificationTrouble]:
    """Notices that failed at least once since `since`, newest first."""
    rows = await conn.fetch(
        """SELECT c.slug AS clinic, n.kind, n.status, n.failures, n.last_error, n.created_at
           FROM clinic_notifications n JOIN clinics c ON c.id = n.clinic_id
           WHERE n.failures > 0 AND n.created_at >= $1 ORDER BY n.created_at DESC LIMIT $2""",
        since,
        limit,
    )
    return [NotificationTrouble(**dict(r)) for r in rows]


@dataclass(frozen=True)
class Overdue:
    clinic_id: uuid.UUID
    slug: str


async def overdue_clinics(conn: Executor, pulled_before: datetime) -> list[Overdue]:
    """Active clinics with deliveries waiting since before `pulled_before` that have not pulled since then."""
    rows = await conn.fetch(
        """SELECT c.id AS clinic_id, c.slug FROM clinics c
           WHERE c.status = 'active'
             AND (c.last_pull_at IS NULL OR c.last_pull_at < $1)
             AND EXISTS (SELECT 1 FROM deliveries d WHERE d.clinic_id = c.id AND d.status = 'available'
                         AND d.dispatched_at < $1)
           ORDER BY c.slug""",
        pulled_before,
    )
    return [Overdue(r["clinic_id"], r["slug"]) for r in rows]


async def pull_periods(conn: Executor, clinic_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Each clinic's current "since its last pull" period: a notice per period, so one per unpulled batch."""
    rows = await conn.fetch("SELECT id, last_pull_at FROM clinics WHERE id = ANY($1::uuid[])", clinic_ids)
    return {r["id"]: "since-pull:" + (r["last_pull_at"].isoformat() if r["last_pull_at"] else "never") for r in rows}
