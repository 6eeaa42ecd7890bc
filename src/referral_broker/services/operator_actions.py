"""What an operator may do from the dashboard: retry a dead delivery, suspend or re-activate a clinic,
and verify a clinic's pending keys with the fingerprint read out to them. Each is audited."""

from __future__ import annotations

import logging
import uuid

from referral_broker.domain.keys import ClinicStatus
from referral_broker.services import enrolment
from referral_broker.services.context import BrokerContext
from referral_broker.services.ports import JOB_DISPATCH
from referral_broker.store import audit, clinics, operator_actions
from referral_protocol.errors import DomainError

log = logging.getLogger(__name__)


class ActionRefused(DomainError):
    """The action does not apply (the delivery is not dead, the clinic is not in that state, …)."""


async def retry_dead_delivery(ctx: BrokerContext, delivery_id: uuid.UUID, *, actor: str) -> str:
    """dead → queued, the dispatch job made due again with fresh attempts, and the doorbell rung.

    Returns the clinic's slug. The dispatch job then moves it (and nothing already moved) to the inbox.
    """
    now = ctx.clock()
    async with ctx.pool.acquire() as conn, conn.transaction():
        revived = await operator_actions.revive_dead_delivery(conn, delivery_id, now)
        if revived is None:
            raise ActionRefused("that delivery is not dead (perhaps it was retried already)")
        await operator_actions.rearm(conn, JOB_DISPATCH, revived.referral_id, now)
        await audit.append(
            conn,
            at=now,
            actor=actor,
            action="delivery.retried",
            subject=str(revived.referral_id),
            details={"delivery": str(delivery_id), "clinic": revived.clinic},
        )
    try:
        await ctx.doorbell.ring(JOB_DISPATCH, revived.referral_id)
    except Exception:  # the outbox row is due; the reconciler rings it within seconds
        log.warning("could not ring for referral %s after a retry; the reconciler will", revived.referral_id)
    return revived.clinic


async def suspend_clinic(ctx: BrokerContext, slug: str, *, actor: str) -> None:
    await _move_clinic(ctx, slug, ClinicStatus.ACTIVE, ClinicStatus.SUSPENDED, actor, "clinic.suspended")


async def reactivate_clinic(ctx: BrokerContext, slug: str, *, actor: str) -> None:
    await _move_clinic(ctx, slug, ClinicStatus.SUSPENDED, ClinicStatus.ACTIVE, actor, "clinic.reactivated")


async def _move_clinic(
    ctx: BrokerContext, slug: str, source: ClinicStatus, target: ClinicStatus, actor: str, action: str
) -> None:
    now = ctx.clock()
    async with ctx.pool.acquire() as conn, conn.transaction():
        if not await operator_actions.move_clinic(conn, slug, source, target):
            found = await clinics.by_slug(conn, slug)
            state = f"is {found.status}" if found else "is not enrolled"
            raise ActionRefused(f"the clinic {state}; only a {source} clinic can become {target}")
        await audit.append(conn, at=now, actor=actor, action=action, subject=slug)


async def verify_clinic_keys(ctx: BrokerContext, slug: str, fingerprint: str, *, actor: str) -> int:
    """The same check as `referral-broker clinic verify`: the fingerprint must be typed in, never shown."""
    return await enrolment.verify(ctx, slug, fingerprint, actor=actor)
