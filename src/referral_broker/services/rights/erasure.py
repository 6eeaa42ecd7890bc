"""Withdrawal of consent (GDPR art. 7(3)) and erasure (art. 17): both stop what is undelivered and tell
the clinics that have the referral by a sealed notice.

Erasure keeps what the law asks of a controller that must show what it did: that a referral was
forwarded to which clinics on which day and was erased on which day, with no person in it — the same
anonymous remainder the five-month anonymisation leaves, plus the day of erasure.

A referral under legal hold is not erased (GDPR art. 17(3)(e); docs/decisions/0057): the patient is told why
and that withdrawing consent still stops everything else; the hold's end returns it to the five-month rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from referral_broker.domain.retention import LOCAL_TIME
from referral_broker.services import clinic_notices, manage, retention
from referral_broker.services.context import BrokerContext
from referral_broker.services.rights import linked
from referral_broker.services.rights.sessions import RightsSession
from referral_broker.store import audit
from referral_broker.store import referrals as referral_store
from referral_broker.store import retention as retention_store
from referral_broker.store import rights as rights_store
from referral_protocol.errors import DomainError
from referral_protocol.notice import NoticeKind


class HeldForLegalClaim(DomainError):
    """The referral is under legal hold: erasure is refused until the hold ends (art. 17(3)(e))."""


@dataclass(frozen=True)
class Stopped:
    cancelled: int  # deliveries stopped before the clinic received them
    notices: int  # clinics told
    reach: clinic_notices.Reach = field(default_factory=clinic_notices.Reach)  # who was told, by name


async def withdraw(ctx: BrokerContext, session: RightsSession, reference: str) -> Stopped:
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await linked.lock(conn, session, reference)
        done = await manage.withdraw_locked(
            ctx, conn, row.id, reference, first_time=row.withdrawn_at is None, actor="patient:rights"
        )
    await clinic_notices.ring(ctx, done.planned)
    return Stopped(len(done.cancelled), len(done.planned.sealed), done.planned.reach)


async def erase(ctx: BrokerContext, session: RightsSession, reference: str) -> Stopped:
    """Erase now: stop what is undelivered, anonymise at once, tell the clinics. One transaction.

    The hold is read under the row's lock, so a hold placed at the same moment either comes first (and the
    erasure is refused) or waits for the erasure (and finds nothing left to hold)."""
    now = ctx.clock()
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await linked.lock(conn, session, reference)
        if row.held_at is not None:  # recorded here; refused once the record is committed
            await audit.append(conn, at=now, actor="patient", action="rights.erasure_refused", subject=str(row.id))
            planned = None
        else:
            deliveries = await referral_store.deliveries_of(conn, row.id, lock=True)  # who is told: decision 0139
            cancelled = await referral_store.cancel_undelivered(conn, row.id, now)
            # The manage link will say "erased on this day", and nothing more (0017): remembered by a keyed hash.
            manage_hash = await rights_store.manage_token_hash_of(conn, row.id)
            if manage_hash is not None:
                await rights_store.remember_erased_link(
                    conn, manage.erased_link_hash(ctx, manage_hash), now.astimezone(LOCAL_TIME).date()
                )
            # Anonymising also expires the unserved notices about it: they may hold the old contact details.
            category = retention.surviving_category(ctx, row.id.bytes, row.contact_ct)
            await retention_store.anonymise(conn, [row.id], [category], now)
            await rights_store.mark_erased(conn, row.id, now)
            planned = await clinic_notices.seal_notices(
                ctx, conn, kind=NoticeKind.ERASURE, reference=reference, deliveries=deliveries, requested_at=now
            )
            await audit.append(
                conn,
                at=now,
                actor="patient",
                action="rights.erased",
                subject=str(row.id),
                details={
                    "cancelled": [str(i) for i in cancelled],
                    "notices": len(planned.sealed),
                    "unsealable": planned.unsealable,
                },
            )
    if planned is None:
        raise HeldForLegalClaim("the referral is under legal hold")
    await clinic_notices.ring(ctx, planned)
    return Stopped(len(cancelled), len(planned.sealed), planned.reach)
