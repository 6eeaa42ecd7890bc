"""Operator accounts, their server-side sessions, and the counters of failed logins."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from referral_broker.store.pool import Connection, Executor


class UsernameTaken(Exception):
    """An operator with this username exists already."""


@dataclass(frozen=True)
class OperatorRow:
    id: uuid.UUID
    username: str
    role: str
    password_hash: str
    totp_secret_ct: bytes
    last_totp_step: int | None
    created_at: datetime
    disabled_at: datetime | None


async def insert_operator(
    conn: Connection,
    *,
    id: uuid.UUID,
    username: str,
    role: str,
    password_hash: str,
    totp_secret_ct: bytes,
    now: datetime,
) -> None:
    try:
        await conn.execute(
            """INSERT INTO operators (id, username, role, password_hash, totp_secret_ct, created_at)
               VALUES ($1, $2, $3, $4, $5, $6)""",
            id,
            username,
            role,
            password_hash,
            totp_secret_ct,
            now,
        )
    except asyncpg.UniqueViolationError:
        raise UsernameTaken(username) from None


async def by_username(conn: Executor, username: str) -> OperatorRow | None:
    row = await conn.fetchrow(
        """SELECT id, username, role, password_hash, totp_secret_ct, last_totp_step, created_at, disabled_at
           FROM operators WHERE username = $1""",
        username,
    )
    return OperatorRow(**dict(row)) if row else None


async def all_operators(conn: Executor) -> list[OperatorRow]:
    rows = await conn.fetch(
        """SELECT id, username, role, password_hash, totp_secret_ct, last_totp_step, created_at, disabled_at
           FROM operators ORDER BY username"""
    )
    return [OperatorRow(**dict(r)) for r in rows]


async def use_totp_step(conn: Executor, operator_id: uuid.UUID, step: int) -> bool:
    """Record `step` as used; False when it, or a later one, was used already (a replayed code)."""
    updated = await conn.fetchval(
        """UPDATE operators SET last_totp_step = $2
           WHERE id = $1 AND (last_totp_step IS NULL OR last_totp_step < $2) RETURNING id""",
        operator_id,
        step,
    )
    return updated is not None


async def update_password_hash(conn: Executor, operator_id: uuid.UUID, password_hash: str) -> None:
    await conn.execute("UPDATE operators SET password_hash = $2 WHERE id = $1", operator_id, password_hash)


# --- sessions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionRow:
    operator_id: uuid.UUID
    username: str
    role: str
    created_at: datetime
    last_seen_at: datetime
    ended_at: datetime | None
    operator_disabled_at: datetime | None


async def insert_session(conn: Executor, id_hash: bytes, operator_id: uuid.UUID, now: datetime) -> None:
    await conn.execute(
        """INSERT INTO operator_sessions (id_hash, operator_id, created_at, last_seen_at)
           VALUES ($1, $2, $3, $3)""",
        id_hash,
        operator_id,
        now,
    )


async def session(conn: Executor, id_hash: bytes) -> SessionRow | None:
    row = await conn.fetchrow(
        """SELECT s.operator_id, o.username, o.role, s.created_at, s.last_seen_at, s.ended_at,
                  o.disabled_at AS operator_disabled_at
           FROM operator_sessions s JOIN operators o ON o.id = s.operator_id
           WHERE s.id_hash = $1""",
        id_hash,
    )
    return SessionRow(**dict(row)) if row else None


async def touch_session(conn: Executor, id_hash: bytes, now: datetime) -> None:
    await conn.execute(
        "UPDATE operator_sessions SET last_seen_at = $2 WHERE id_hash = $1 AND ended_at IS NULL", id_hash, now
    )


async def end_session(conn: Executor, id_hash: bytes, now: datetime) -> bool:
    """End the session on the server; True when this call ended it."""
    result = await conn.execute(
        "UPDATE operator_sessions SET ended_at = $2 WHERE id_hash = $1 AND ended_at IS NULL", id_hash, now
    )
    return bool(result.endswith(" 1"))


async def forget_sessions_before(conn: Executor, before: datetime) -> int:
    """Delete sessions that ended, or were last used, before `before`."""
    result = await conn.execute(
        """DELETE FROM operator_sessions
           WHERE coalesce(ended_at, last_seen_at) < $1 OR created_at < $1 - interval '1 day'""",
        before,
    )
    return int(result.split()[-1])


# --- login attempt counters -----------------------------------------------------------------------
#
# `login_throttle.failures` counts the attempts of a window that did not succeed, including those still
# being checked: an attempt is counted before its password is checked (`reserve_attempt`), and a success
# takes its count back. So no burst of parallel requests gets more checks than the limit (control 21).


async def reserve_attempt(
    conn: Executor, limits: dict[bytes, int], now: datetime, window_ends_at: datetime
) -> set[bytes]:
    """Count one attempt under each key still below its limit (`limits`: key → limit); the keys counted.

    One statement: a key's row is locked while it is tested and counted, so parallel callers are
    counted one after another and at most `limit` of them are let through a window. A key whose
    window ended starts a new one at one. A key at its limit is not counted."""
    rows = await conn.fetch(
        """WITH wanted AS (SELECT * FROM unnest($1::bytea[], $2::integer[]) AS w (key, most))
           INSERT INTO login_throttle AS t (key, failures, window_ends_at)
           SELECT key, 1, $4 FROM wanted
           ON CONFLICT (key) DO UPDATE SET
               failures = CASE WHEN t.window_ends_at > $3 THEN t.failures + 1 ELSE 1 END,
               window_ends_at = CASE WHEN t.window_ends_at > $3 THEN t.window_ends_at ELSE $4 END
           WHERE t.window_ends_at <= $3 OR t.failures < (SELECT most FROM wanted WHERE wanted.key = t.key)
           RETURNING key""",
        list(limits),
        list(limits.values()),
        now,
        window_ends_at,
    )
    return {bytes(r["key"]) for r in rows}


async def give_back(conn: Executor, keys: list[bytes], now: datetime) -> None:
    """Take back one counted attempt under each key (a success, or a key counted beside one at its limit)."""
    await conn.execute(
        """UPDATE login_throttle SET failures = failures - 1
           WHERE key = ANY($1::bytea[]) AND window_ends_at > $2 AND failures > 0""",
        keys,
        now,
    )


async def clear_failures(conn: Executor, key: bytes) -> None:
    await conn.execute("DELETE FROM login_throttle WHERE key = $1", key)


async def forget_failures_before(conn: Executor, before: datetime) -> int:
    result = await conn.execute("DELETE FROM login_throttle WHERE window_ends_at < $1", before)
    return int(result.split()[-1])
