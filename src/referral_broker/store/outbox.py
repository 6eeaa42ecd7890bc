"""The transactional outbox: rows that say a job must run, committed with the data they concern."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from referral_broker.store.pool import Connection, Executor


@dataclass(frozen=True)
class DueJob:
    job: str
    subject_id: uuid.UUID


async def due(conn: Executor, now: datetime, limit: int) -> list[DueJob]:
    rows = await conn.fetch(
        """SELECT job, subject_id FROM outbox WHERE done_at IS NULL AND due_at <= $1
           ORDER BY due_at LIMIT $2""",
        now,
        limit,
    )
    return [DueJob(r["job"], r["subject_id"]) for r in rows]


async def count_attempt_autocommit(conn: Executor, job: str, subject_id: uuid.UUID) -> int | None:
    """Count one more attempt of a pending job, committed on its own so a failed attempt still counts.

    None when the job is already done (or never existed)."""
    value = await conn.fetchval(
        """UPDATE outbox SET attempts = attempts + 1
           WHERE job = $1 AND subject_id = $2 AND done_at IS NULL RETURNING attempts""",
        job,
        subject_id,
    )
    return int(value) if value is not None else None


async def claim_untried(
    conn: Connection, job: str, now: datetime, limit: int, *, besides: uuid.UUID
) -> list[uuid.UUID]:
    """Up to `limit` other due rows of `job` that no run has tried yet, locked until the caller's
    transaction ends; rows another transaction holds are skipped, not waited for."""
    rows = await conn.fetch(
        """SELECT subject_id FROM outbox
           WHERE done_at IS NULL AND due_at <= $2 AND job = $1 AND attempts = 0 AND subject_id <> $4
           ORDER BY due_at LIMIT $3
           FOR UPDATE SKIP LOCKED""",
        job,
        now,
        limit,
        besides,
    )
    return [r["subject_id"] for r in rows]


async def finish_all(conn: Executor, job: str, subject_ids: list[uuid.UUID], now: datetime, outcome: str) -> int:
    result = await conn.execute(
        """UPDATE outbox SET done_at = $3, outcome = $4
           WHERE job = $1 AND subject_id = ANY($2::uuid[]) AND done_at IS NULL""",
        job,
        subject_ids,
        now,
        outcome,
    )
    return int(result.split()[-1])


async def finish(conn: Executor, job: str, subject_id: uuid.UUID, now: datetime, outcome: str) -> bool:
    return await finish_all(conn, job, [subject_id], now, outcome) == 1
