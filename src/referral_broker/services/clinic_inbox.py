"""The clinic's inbox: what a clinic may list, pull and acknowledge — its own deliveries, nothing else."""

from __future__ import annotations

import uuid

from referral_broker.domain.enrolment import MAX_ACK, AckRequest, AckResult, InboxItem, InboxPage
from referral_broker.domain.errors import FieldError, InvalidRequest
from referral_broker.services.context import BrokerContext
from referral_broker.store import audit, clinics, deliveries, notices
from referral_broker.store.clinics import ClinicRow

MAX_PAGE = 500


async def list_inbox(ctx: BrokerContext, clinic: ClinicRow, limit: int) -> InboxPage:
    """Referrals first, oldest first; then notices about referrals the clinic has received (a page is
    never all notices while referrals wait, so a referral is always served before its notices)."""
    limit = max(1, min(limit, MAX_PAGE))
    rows = await deliveries.inbox(ctx.pool, clinic.id, limit)
    items = [InboxItem(delivery_id=str(r.id), envelope=r.envelope) for r in rows[:limit]]
    more = len(rows) > limit
    if not more:
        room = limit - len(items)
        waiting = await notices.inbox(ctx.pool, clinic.id, room)
        items += [InboxItem(delivery_id=str(n.id), envelope=n.envelope) for n in waiting[:room]]
        more = len(waiting) > room
    await clinics.record_pull(ctx.pool, clinic.id, ctx.clock())
    return InboxPage(items=items, more=more)


async def acknowledge(ctx: BrokerContext, clinic: ClinicRow, request: AckRequest) -> AckResult:
    """Idempotent: acknowledging twice reports the id as acknowledged both times and changes nothing."""
    if len(request.delivery_ids) > MAX_ACK:
        raise InvalidRequest([FieldError("delivery_ids", "too_many", f"acknowledge at most {MAX_ACK} at once")])
    ids: list[uuid.UUID] = []
    unknown: list[str] = []
    for raw in request.delivery_ids:
        try:
            ids.append(uuid.UUID(raw))
        except ValueError:
            unknown.append(raw)
    now = ctx.clock()
    async with ctx.pool.acquire() as conn, conn.transaction():
        moved, before = await deliveries.acknowledge(conn, clinic.id, ids, now)
        if moved:
            await audit.append(
                conn,
                at=now,
                actor=f"clinic:{clinic.slug}",
                action="delivery.acknowledged",
                subject=clinic.slug,
                details={"deliveries": [str(i) for i in moved]},
            )
        settled = {*moved, *before}
        rest = [i for i in ids if i not in settled]
        notices_moved, notices_before = await notices.acknowledge(conn, clinic.id, rest, now) if rest else ([], [])
        if notices_moved:
            await audit.append(
                conn,
                at=now,
                actor=f"clinic:{clinic.slug}",
                action="notice.acknowledged",
                subject=clinic.slug,
                details={"notices": [str(i) for i in notices_moved]},
            )
    known = {str(i) for i in (*moved, *before, *notices_moved, *notices_before)}
    return AckResult(
        acknowledged=[r for r in request.delivery_ids if r in known],
        unknown=[r for r in request.delivery_ids if r not in known],
    )
