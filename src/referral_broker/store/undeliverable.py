"""Deliveries that no key of their clinic can open: sealed only to revoked keys, or refused by the clinic.

They leave the inbox as `undeliverable` with their ciphertext dropped (nobody can use it), so valid
referrals behind them are served, operators see them, and the patient is asked to submit again.
Each change is one conditional UPDATE whose sources come from the delivery state machine.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from referral_broker.domain.delivery import DeliveryStatus, check_move, sources_of
from referral_broker.store.pool import Connection, Executor

#: Deliveries the broker still holds for the clinic: a key sealed into one of these still has work.
WAITING = ("queued", "failed", "dead", "available")


async def mark_sealed_only_to_unusable(
    conn: Connection, clinic_id: uuid.UUID, usable_key_ids: list[str], now: datetime, reason: str
) -> list[uuid.UUID]:
    """Every waiting delivery of the clinic sealed to none of `usable_key_ids` becomes undeliverable."""
    rows = await conn.fetch(
        """UPDATE deliveries SET status = $2, envelope = NULL, last_error = $5, updated_at = $4
           WHERE clinic_id = $1 AND status = ANY($6::text[]) AND NOT (recipient_keys && $3::text[])
           RETURNING id""",
        clinic_id,
        DeliveryStatus.UNDELIVERABLE.value,
        usable_key_ids,
        now,
        reason,
        sources_of(DeliveryStatus.UNDELIVERABLE),
    )
    return [r["id"] for r in rows]


async def mark_refused(
    conn: Connection, clinic_id: uuid.UUID, ids: list[uuid.UUID], reason: str, now: datetime
) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """available → undeliverable for the clinic's own deliveries; returns (moved now, undeliverable before)."""
    check_move(DeliveryStatus.AVAILABLE, DeliveryStatus.UNDELIVERABLE)
    moved = await conn.fetch(
        """UPDATE deliveries SET status = $3, envelope = NULL, last_error = $4, updated_at = $5
           WHERE clinic_id = $1 AND id = ANY($2::uuid[]) AND status = $6
           RETURNING id""",
        clinic_id,
        ids,
        DeliveryStatus.UNDELIVERABLE.value,
        reason,
        now,
        DeliveryStatus.AVAILABLE.value,
    )
    before = await conn.fetch(
        """SELECT id FROM deliveries WHERE clinic_id = $1 AND id = ANY($2::uuid[]) AND status = $3
           AND updated_at < $4""",
        clinic_id,
        ids,
        DeliveryStatus.UNDELIVERABLE.value,
        now,
    )
    return [r["id"] for r in moved], [r["id"] for r in before]


@dataclass(frozen=True)
class Waiting:
    in_inbox: int
    oldest_in_inbox: datetime | None
    undeliverable: int
    by_key: dict[str, int]  # key id -> waiting deliveries sealed to it


async def waiting_for(conn: Executor, clinic_id: uuid.UUID) -> Waiting:
    row = await conn.fetchrow(
        """SELECT count(*) FILTER (WHERE status = 'available') AS in_inbox,
                  min(dispatched_at) FILTER (WHERE status = 'available') AS oldest,
                  count(*) FILTER (WHERE status = 'undeliverable') AS undeliverable
           FROM deliveries WHERE clinic_id = $1 AND status IN ('available', 'undeliverable')""",
        clinic_id,
    )
    keys = await conn.fetch(
        """SELECT k, count(*) AS n FROM deliveries, unnest(recipient_keys) AS k
           WHERE clinic_id = $1 AND status = ANY($2::text[]) GROUP BY k""",
        clinic_id,
        list(WAITING),
    )
    assert row is not None  # noqa: S101 - an aggregate always returns a row
    return Waiting(row["in_inbox"], row["oldest"], row["undeliverable"], {r["k"]: r["n"] for r in keys})


async def keys_still_holding(conn: Executor, clinic_id: uuid.UUID, key_ids: list[str]) -> set[str]:
    """Which of `key_ids` some waiting delivery of the clinic was sealed to."""
    rows = await conn.fetch(
        """SELECT DISTINCT k FROM deliveries, unnest(recipient_keys) AS k
           WHERE clinic_id = $1 AND status = ANY($2::text[]) AND recipient_keys && $3::text[]
             AND k = ANY($3::text[])""",
        clinic_id,
        list(WAITING),
        key_ids,
    )
    return {r["k"] for r in rows}


@dataclass(frozen=True)
class UndeliverableAtClinic:
    slug: str
    name: str
    count: int
    latest: datetime
    reasons: list[str]


async def by_clinic(conn: Executor) -> list[UndeliverableAtClinic]:
    rows = await conn.fetch(
        """SELECT c.slug, c.name, count(*) AS n, max(d.updated_at) AS latest,
                  array_agg(DISTINCT coalesce(d.last_error, '')) AS reasons
           FROM deliveries d JOIN clinics c ON c.id = d.clinic_id
           WHERE d.status = 'undeliverable'
           GROUP BY c.slug, c.name ORDER BY max(d.updated_at) DESC"""
    )
    return [UndeliverableAtClinic(r["slug"], r["name"], r["n"], r["latest"], list(r["reasons"])) for r in rows]
