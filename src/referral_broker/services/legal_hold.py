"""Legal hold (docs/decisions/0057): keep a referral past the retention period while a legal claim or an
authority's order needs it, and give it back to the five-month rule when that ends.

A hold is placed and released by an operator (CLI or /ops); each is audited with the reason category but not the
note (the note is checked for contact details, yet a name cannot be recognised, so it stays on the referral row and
leaves with the hold). Releasing a hold on a referral already past its retention period anonymises it in the same
transaction: nothing overdue waits for the next sweep.
"""

from __future__ import annotations

from dataclasses import dataclass

from referral_broker.domain.legal_hold import HoldReason, HoldRefused, checked_note
from referral_broker.domain.retention import months_before
from referral_broker.services import retention
from referral_broker.services.context import BrokerContext
from referral_broker.store import audit, legal_holds
from referral_broker.store import retention as retention_store
from referral_broker.store.legal_holds import Hold

__all__ = ["Hold", "HoldReason", "HoldRefused", "Released", "current", "place", "release"]

_NOT_FOUND = (
    "no referral has the reference {reference} (or it was anonymised already and there is nothing left to hold)"
)


@dataclass(frozen=True)
class Released:
    anonymised: bool  # it was past its retention period, so it was anonymised at release


def _reference(text: str) -> str:
    return text.strip().upper()


async def place(ctx: BrokerContext, reference: str, reason: HoldReason, note: str, *, actor: str) -> None:
    note = checked_note(note)
    reference = _reference(reference)
    now = ctx.clock()
    async with ctx.pool.acquire() as conn, conn.transaction():
        target = await legal_holds.lock_by_reference(conn, reference)
        if target is None:
            raise HoldRefused(_NOT_FOUND.format(reference=reference))
        if target.held_at is not None:
            raise HoldRefused(f"{reference} is already under legal hold; release it first to change the reason")
        await legal_holds.place(conn, target.id, reason.value, note, actor, now)
        await audit.append(
            conn, at=now, actor=actor, action="referral.held", subject=str(target.id), details={"reason": reason.value}
        )


async def release(ctx: BrokerContext, reference: str, *, actor: str) -> Released:
    reference = _reference(reference)
    now = ctx.clock()
    async with ctx.pool.acquire() as conn, conn.transaction():
        target = await legal_holds.lock_by_reference(conn, reference)
        if target is None:
            raise HoldRefused(_NOT_FOUND.format(reference=reference))
        if target.held_at is None:
            raise HoldRefused(f"{reference} is not under legal hold")
        await legal_holds.release(conn, target.id)
        overdue = target.due_from <= months_before(now, ctx.settings.retention_months)
        if overdue:
            category = retention.surviving_category(ctx, target.id.bytes, target.contact_ct)
            await retention_store.anonymise(conn, [target.id], [category], now)
        await audit.append(
            conn,
            at=now,
            actor=actor,
            action="referral.released",
            subject=str(target.id),
            details={"anonymised": overdue},
        )
    return Released(anonymised=overdue)


async def current(ctx: BrokerContext) -> list[Hold]:
    return await legal_holds.current(ctx.pool)
