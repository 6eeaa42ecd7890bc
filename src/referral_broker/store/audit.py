"""The audit trail: append-only, hash-chained, with no content and no person in it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from referral_broker.store.pool import Connection, Executor

_GENESIS = b"\x00" * 32
_CHAIN_LOCK = 0x5265_6641  # serialises appends so each row sees its predecessor


def _digest(prev: bytes, at: datetime, actor: str, action: str, subject: str | None, details: dict[str, Any]) -> bytes:
    canonical = json.dumps([at.isoformat(), actor, action, subject, details], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(prev + canonical.encode()).digest()


async def append(
    conn: Connection,
    *,
    at: datetime,
    actor: str,
    action: str,
    subject: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one event inside the caller's transaction (the lock is released at its commit)."""
    await append_all(conn, [Event(at, actor, action, subject, details or {})])


@dataclass(frozen=True)
class Event:
    at: datetime
    actor: str
    action: str
    subject: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


async def append_all(conn: Connection, events: list[Event]) -> None:
    """Append events in this order inside the caller's transaction, each chained to the one before: one
    lock, one read of the last hash and one (pipelined) insert for them all."""
    if not events:
        return
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _CHAIN_LOCK)
    prev = await conn.fetchval("SELECT hash FROM audit_events ORDER BY id DESC LIMIT 1") or _GENESIS
    rows = []
    for e in events:
        digest = _digest(prev, e.at, e.actor, e.action, e.subject, e.details)
        rows.append((e.at, e.actor, e.action, e.subject, e.details, prev, digest))
        prev = digest
    await conn.executemany(
        """INSERT INTO audit_events (at, actor, action, subject, details, prev_hash, hash)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        rows,
    )


@dataclass(frozen=True)
class BrokenLink:
    event_id: int
    reason: str


async def verify_chain(conn: Executor) -> tuple[int, BrokenLink | None]:
    """Walk the chain; return how many events were checked and the first broken link, if any."""
    prev = _GENESIS
    checked = 0
    rows = await conn.fetch(
        "SELECT id, at, actor, action, subject, details, prev_hash, hash FROM audit_events ORDER BY id"
    )
    for r in rows:
        if bytes(r["prev_hash"]) != prev:
            return checked, BrokenLink(r["id"], "does not follow the event before it (a row was removed or reordered)")
        if _digest(prev, r["at"], r["actor"], r["action"], r["subject"], r["details"]) != bytes(r["hash"]):
            return checked, BrokenLink(r["id"], "its content does not match its hash (the row was altered)")
        prev = bytes(r["hash"])
        checked += 1
    return checked, None


async def recent(conn: Executor, limit: int = 50) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT id, at, actor, action, subject, details FROM audit_events ORDER BY id DESC LIMIT $1", limit
    )
    return [dict(r) for r in rows]


@dataclass(frozen=True)
class AuditEvent:
    id: int
    at: datetime
    actor: str
    action: str
    subject: str | None
    details: dict[str, Any]


async def search(
    conn: Executor,
    *,
    clinic: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 200,
) -> list[AuditEvent]:
    """Events newest first. `action` matches a prefix (`operator.` finds every operator event); `clinic`
    matches events about the clinic, by it, or about a referral with a delivery to it."""
    rows = await conn.fetch(
        """SELECT id, at, actor, action, subject, details FROM audit_events e
           WHERE ($1::text IS NULL OR starts_with(e.action, $1))
             AND ($2::timestamptz IS NULL OR e.at >= $2)
             AND ($3::timestamptz IS NULL OR e.at < $3)
             AND ($4::text IS NULL OR e.subject = $4 OR e.actor = 'clinic:' || $4 OR e.details ->> 'clinic' = $4
                  OR e.subject IN (SELECT d.referral_id::text FROM deliveries d JOIN clinics c ON c.id = d.clinic_id
                                   WHERE c.slug = $4))
           ORDER BY e.id DESC LIMIT $5""",
        action,
        since,
        until,
        clinic,
        limit,
    )
    return [AuditEvent(**dict(r)) for r in rows]


async def actions(conn: Executor) -> list[str]:
    """Every action recorded so far, for the filter of the audit page."""
    return [r["action"] for r in await conn.fetch("SELECT DISTINCT action FROM audit_events ORDER BY action")]
