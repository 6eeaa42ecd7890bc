"""Dispatch: a referral's queued deliveries become available in each clinic's inbox, once.

Idempotency: the effect is one transaction whose UPDATE only moves deliveries still queued or
failed, and which marks the outbox row done. A second run (a retry, the reconciler, a second worker,
a worker restarted after SIGKILL) finds the row done or the deliveries moved, and changes nothing.

A run takes along other referrals waiting to be dispatched that no run has tried yet (up to `BATCH`,
their outbox rows locked with SKIP LOCKED, so two runs never take the same): under load the fixed
cost of a dispatch — its statements, the audit chain's lock, the commit — is shared by many
referrals (docs/performance.md). Their own jobs are then withdrawn from arq's queue; one already
picked up finds its row done and does nothing. Each referral is still dispatched, receipted and
audited on its own; if the shared transaction fails, the run tries its own referral alone before it
reports a failure, so a referral whose dispatch keeps failing never holds back another, and only its
own attempts count towards giving up on it.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from enum import StrEnum

import asyncpg
import msgspec

from referral_broker.domain.delivery import DeliveryStatus
from referral_broker.services import notifications
from referral_broker.services.context import BrokerContext
from referral_broker.services.ports import JOB_DISPATCH
from referral_broker.store import audit, deliveries, inbox_signal, monitoring, outbox

log = logging.getLogger(__name__)

_RECEIPT_DOMAIN = b"referral-broker dispatch receipt v1\x00"
#: Referrals one dispatch run may make available together.
BATCH = 50
#: Failures that say nothing about the referral itself: the database is away or overloaded.
_TRANSIENT = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    OSError,
    TimeoutError,
)


class DispatchOutcome(StrEnum):
    DISPATCHED = "dispatched"
    NOTHING_TO_DO = "nothing-to-do"
    DEAD = "dead"


class TransientDispatchFailure(Exception):
    """The effect could not be committed this time (database unreachable, …); try again later."""

    def __init__(self, attempts: int, reason: str) -> None:
        super().__init__(reason)
        self.attempts = attempts


async def dispatch_referral(ctx: BrokerContext, referral_id: uuid.UUID) -> DispatchOutcome:
    try:
        attempts = await outbox.count_attempt_autocommit(ctx.pool, JOB_DISPATCH, referral_id)
    except _TRANSIENT as exc:
        raise TransientDispatchFailure(0, type(exc).__name__) from exc
    if attempts is None:
        return DispatchOutcome.NOTHING_TO_DO
    now = ctx.clock()
    if attempts > ctx.settings.dispatch_max_tries:
        await _give_up(ctx, referral_id, attempts)
        return DispatchOutcome.DEAD
    try:
        try:
            moved, taken_along, notices = await _dispatch_together(ctx, referral_id, now, BATCH)
        except _TRANSIENT:
            # Perhaps another referral taken along made it fail: try this one alone before failing.
            moved, taken_along, notices = await _dispatch_together(ctx, referral_id, now, 1)
    except _TRANSIENT as exc:
        reason = type(exc).__name__
        await _record_failure(ctx, referral_id, reason)
        raise TransientDispatchFailure(attempts, reason) from exc
    await notifications.ring(ctx, notices)
    await _withdraw(ctx, taken_along)
    return (
        DispatchOutcome.DISPATCHED
        if any(d.referral_id == referral_id for d in moved)
        else DispatchOutcome.NOTHING_TO_DO
    )


async def _withdraw(ctx: BrokerContext, taken_along: list[uuid.UUID]) -> None:
    """The jobs of referrals this run dispatched beside its own need not run (each would find its row
    done): under load most jobs are such, and a worker spent more on each than on a dispatch's share."""
    try:
        await ctx.doorbell.withdraw(JOB_DISPATCH, taken_along)
    except Exception:  # they run and do nothing, as before
        log.info("could not withdraw %d jobs already done; they will run and find nothing to do", len(taken_along))


async def _dispatch_together(
    ctx: BrokerContext, referral_id: uuid.UUID, now: datetime, batch: int
) -> tuple[list[deliveries.Dispatched], list[uuid.UUID], list[uuid.UUID]]:
    """One transaction: this referral, and up to `batch - 1` others nobody has tried, made available."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        # The commit need not wait for the disk: a dispatch lost in a crash is undone whole (the
        # deliveries are queued again, the outbox rows are not done) and the reconciler redoes it. Any
        # later effect that rests on it — a clinic's acknowledgement, a notice sent — commits
        # synchronously, and flushing the WAL that far makes this commit durable first. Waiting for
        # fsync here, under the audit chain's lock, capped dispatch at one commit per fsync.
        await conn.execute("SET LOCAL synchronous_commit = off")
        others = (
            await outbox.claim_untried(conn, JOB_DISPATCH, now, batch - 1, besides=referral_id) if batch > 1 else []
        )
        referral_ids = [referral_id, *others]
        moved = await deliveries.make_available(conn, referral_ids, now)
        await inbox_signal.notify(conn, {d.clinic_id for d in moved})  # sent at commit: waiting inboxes answer
        signer = ctx.keys.signer
        await deliveries.insert_receipts(
            conn,
            [
                (
                    d.id,
                    d.clinic_id,
                    d.envelope_sha256,
                    now,
                    signer.key_id,
                    signer.sign(
                        _RECEIPT_DOMAIN,
                        msgspec.json.encode([str(d.id), str(d.clinic_id), d.envelope_sha256.hex(), now.isoformat()]),
                    ),
                )
                for d in moved
            ],
        )
        await outbox.finish_all(conn, JOB_DISPATCH, referral_ids, now, DispatchOutcome.DISPATCHED.value)
        # Each clinic is told (once per unpulled batch), by a job whose outbox row commits here.
        notices = await notifications.plan_after_dispatch(ctx, conn, {d.clinic_id for d in moved})
        by_referral: dict[uuid.UUID, list[str]] = {}
        for d in moved:
            by_referral.setdefault(d.referral_id, []).append(str(d.id))
        # Last, so the audit chain's lock (held to commit) serialises as little as possible.
        await audit.append_all(
            conn,
            [
                audit.Event(now, "worker", "delivery.dispatched", str(rid), {"deliveries": ids})
                for rid, ids in by_referral.items()
            ],
        )
    return moved, others, notices


async def _record_failure(ctx: BrokerContext, referral_id: uuid.UUID, reason: str) -> None:
    try:
        await deliveries.mark(ctx.pool, referral_id, DeliveryStatus.FAILED, ctx.clock(), error=reason)
        await monitoring.count_failure(ctx.pool, f"dispatch:{reason}", ctx.clock())
    except _TRANSIENT:
        log.warning("could not record dispatch failure of referral %s", referral_id)


async def _give_up(ctx: BrokerContext, referral_id: uuid.UUID, attempts: int) -> None:
    now = ctx.clock()
    async with ctx.pool.acquire() as conn, conn.transaction():
        n = await deliveries.mark(
            conn, referral_id, DeliveryStatus.DEAD, now, error=f"gave up after {attempts - 1} attempts"
        )
        await outbox.finish(conn, JOB_DISPATCH, referral_id, now, DispatchOutcome.DEAD.value)
        await monitoring.count_failure(conn, "dispatch:gave_up", now)
        await audit.append(
            conn,
            at=now,
            actor="worker",
            action="delivery.dead",
            subject=str(referral_id),
            details={"deliveries": n, "attempts": attempts - 1},
        )
    log.error("dispatch of referral %s gave up after %d attempts; deliveries are dead", referral_id, attempts - 1)
