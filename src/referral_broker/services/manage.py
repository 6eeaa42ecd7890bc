"""The patient's manage link: see where a referral has got to, and withdraw consent in one step.

The link's token is the only credential; it is looked up by its SHA-256, so the database never holds
it. A token that does not fit the shape of one is refused without a query, and both look the same to
the caller as a token that matches nothing.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import date

from referral_broker.crypto.tokens import token_hash
from referral_broker.services import clinic_notices
from referral_broker.services.context import BrokerContext
from referral_broker.services.ports import JOB_DISPATCH
from referral_broker.store import audit, notices, outbox
from referral_broker.store import referrals as referral_store
from referral_broker.store import rights as rights_store
from referral_broker.store.pool import Connection
from referral_broker.store.referrals import DeliveryView, ManagedReferral
from referral_protocol.notice import NoticeKind

_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{20,100}$")


@dataclass(frozen=True)
class ManagedView:
    referral: ManagedReferral
    deliveries: list[DeliveryView]


@dataclass(frozen=True)
class Withdrawal:
    """What one withdrawal did: the state afterwards, and which deliveries this call stopped."""

    view: ManagedView
    cancelled: list[uuid.UUID]
    first_time: bool
    reach: clinic_notices.Reach = field(default_factory=clinic_notices.Reach)  # who was told, by name


def _hash_of(token: str) -> bytes | None:
    return token_hash(token) if _TOKEN_SHAPE.match(token) else None


def erased_link_hash(ctx: BrokerContext, manage_token_hash: bytes) -> bytes:
    """How an erased referral's manage link is remembered (migration 0017): keyed, so the table alone matches
    nothing."""
    return ctx.keys.vault.blind_index("erased-manage-link", manage_token_hash.hex())


async def erased_on(ctx: BrokerContext, token: str) -> date | None:
    """The day the referral behind this manage link was erased, or None (never erased, or not a link)."""
    hashed = _hash_of(token)
    if hashed is None:
        return None
    # Under every readable data key: a link erased before a rotation still says so until the old key is retired
    # (after that it is an unknown link: its keyed hash cannot be made again without the link; decision 0070).
    hashes = ctx.keys.vault.blind_indexes("erased-manage-link", hashed.hex())
    return await rights_store.erased_on(ctx.pool, hashes)


async def look_up(ctx: BrokerContext, token: str) -> ManagedView | None:
    hashed = _hash_of(token)
    if hashed is None:
        return None
    referral = await referral_store.managed_by_token_hash(ctx.pool, hashed)
    if referral is None:
        return None
    return ManagedView(referral, await referral_store.deliveries_of(ctx.pool, referral.id))


async def withdraw(ctx: BrokerContext, token: str) -> Withdrawal | None:
    """Withdraw consent: stop every delivery not yet received, in one transaction. Idempotent.

    The referral is marked withdrawn, deliveries not acknowledged (queued, failed, dead, and
    available ones waiting in an inbox) become cancelled with their envelopes dropped, the dispatch
    outbox row is closed so nothing rings it again, clinics that have or may have fetched it get a
    sealed withdrawal notice, and an audit event records the ids. A second call finds nothing left
    to change and appends no event.
    """
    hashed = _hash_of(token)
    if hashed is None:
        return None
    async with ctx.pool.acquire() as conn, conn.transaction():
        referral = await referral_store.lock_for_withdrawal(conn, hashed)
        if referral is None:
            return None
        done = await withdraw_locked(
            ctx, conn, referral.id, referral.reference, first_time=referral.withdrawn_at is None, actor="patient"
        )
    await clinic_notices.ring(ctx, done.planned)
    view = await look_up(ctx, token)
    if view is None:  # pragma: no cover - the row was just locked and is never deleted
        return None
    return Withdrawal(view=view, cancelled=done.cancelled, first_time=done.first_time, reach=done.planned.reach)


@dataclass(frozen=True)
class WithdrawnNow:
    cancelled: list[uuid.UUID]
    first_time: bool
    planned: clinic_notices.PlannedNotices


async def withdraw_locked(
    ctx: BrokerContext, conn: Connection, referral_id: uuid.UUID, reference: str, *, first_time: bool, actor: str
) -> WithdrawnNow:
    """The withdrawal itself, for a referral the caller has locked in its transaction."""
    now = ctx.clock()
    planned = clinic_notices.PlannedNotices([], [], [])
    # Locked before deciding who is told: a clinic's listing serving a copy waits, or went first (0139).
    copies = await referral_store.deliveries_of(conn, referral_id, lock=True)
    if first_time:
        await referral_store.mark_withdrawn(conn, referral_id, now)
        planned = await clinic_notices.seal_notices(
            ctx, conn, kind=NoticeKind.WITHDRAWAL, reference=reference, deliveries=copies, requested_at=now
        )
    cancelled = await referral_store.cancel_undelivered(conn, referral_id, now)
    await notices.expire_unserved(conn, cancelled, now)
    await outbox.finish(conn, JOB_DISPATCH, referral_id, now, "withdrawn")
    if first_time or cancelled:
        await audit.append(
            conn,
            at=now,
            actor=actor,
            action="referral.withdrawn",
            subject=str(referral_id),
            details={
                "cancelled": [str(i) for i in cancelled],
                "notices": len(planned.sealed),
                "unsealable": planned.unsealable,
            },
        )
    return WithdrawnNow(cancelled=cancelled, first_time=first_time, planned=planned)
