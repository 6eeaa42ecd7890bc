"""What an operator's actions change: a dead delivery queued again, a clinic suspended or re-activated."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from referral_broker.domain.delivery import DeliveryStatus, sources_of
from referral_broker.domain.keys import ClinicStatus
from referral_broker.store.pool import Connection


@dataclass(frozen=True)
class Revived:
    referral_id: uuid.UUID
    clinic: str


async def revive_dead_delivery(conn: Connection, delivery_id: uuid.UUID, now: datetime) -> Revived | None:
    """dead → queued (the state machine's only way back); None when the delivery is not dead."""
    row = await conn.fetchrow(
        """UPDATE deliveries d SET status = $2, updated_at = $3, last_error = NULL
           FROM clinics c
           WHERE d.id = $1 AND c.id = d.clinic_id AND d.status = ANY($4::text[])
           RETURNING d.referral_id, c.slug""",
        delivery_id,
        DeliveryStatus.QUEUED.value,
        now,
        [s for s in sources_of(DeliveryStatus.QUEUED)],
    )
    return Revived(row["referral_id"], row["slug"]) if row else None


async def rearm(conn: Connection, job: str, subject_id: uuid.UUID, now: datetime) -> None:
    """Make the job due again with a fresh count of attempts, whether its row finished or never existed."""
    await conn.execute(
        """INSERT INTO outbox (job, subject_id, due_at, created_at) VALUES ($1, $2, $3, $3)
           ON CONFLICT (job, subject_id) DO UPDATE SET due_at = $3, done_at = NULL, outcome = NULL, attempts = 0""",
        job,
        subject_id,
        now,
    )


async def move_clinic(conn: Connection, slug: str, source: ClinicStatus, target: ClinicStatus) -> bool:
    """Move the clinic from `source` to `target`; False when it is not in `source` (or unknown)."""
    result = await conn.execute(
        "UPDATE clinics SET status = $3 WHERE slug = $1 AND status = $2", slug, source.value, target.value
    )
    return bool(result.endswith(" 1"))
