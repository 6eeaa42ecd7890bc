"""What a clinic may ask about itself (its keys, what waits), and how it reports an envelope it must refuse.

Refusing is the cure for the "stalled pull": envelopes that fail the clinic's checks used to stay at
the head of the inbox for ever, so a full page of them hid every valid referral behind. A clinic now
reports such an envelope; the delivery leaves the inbox as `undeliverable` (ciphertext dropped), the
operator sees it flagged and the patient is asked to submit again. Only failures that no machine of
the clinic could ever get past are reported (a bad signature, another addressee, a box that does not
open, a malformed payload); the clinic tool skips, without reporting, what another of its machines
may open or a newer version may read.
"""

from __future__ import annotations

import uuid
from collections import defaultdict

from referral_broker.services.clinic_keys import retire_finished_keys
from referral_broker.services.context import BrokerContext
from referral_broker.store import audit, clinics, notices, undeliverable
from referral_broker.store.clinics import ClinicRow
from referral_protocol.enrolment import ClinicStatusReport, KeyStatus, RefusalRequest, RefusalResult


async def status(ctx: BrokerContext, clinic: ClinicRow) -> ClinicStatusReport:
    """The broker's view of the clinic; retiring keys that hold nothing more are retired first."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        await retire_finished_keys(conn, clinic, ctx.clock())
        keys = await clinics.keys_of(conn, clinic.id)
        waiting = await undeliverable.waiting_for(conn, clinic.id)
    return ClinicStatusReport(
        clinic=clinic.slug,
        status=clinic.status,
        keys=[KeyStatus(k.key_id, k.purpose, k.state, waiting.by_key.get(k.key_id, 0)) for k in keys],
        waiting=waiting.in_inbox,
        oldest_waiting_at=waiting.oldest_in_inbox,
        undeliverable=waiting.undeliverable,
        last_pull_at=clinic.last_pull_at,
    )


async def refuse(ctx: BrokerContext, clinic: ClinicRow, request: RefusalRequest) -> RefusalResult:
    """Move refused deliveries of this clinic out of its inbox. Idempotent, scoped to the clinic, audited."""
    by_reason: dict[str, list[uuid.UUID]] = defaultdict(list)
    unknown: list[str] = []
    for r in request.refusals:
        try:
            by_reason[r.reason].append(uuid.UUID(r.delivery_id))
        except ValueError:
            unknown.append(r.delivery_id)
    now = ctx.clock()
    refused: set[str] = set()
    async with ctx.pool.acquire() as conn, conn.transaction():
        moved_all: dict[str, list[str]] = {}
        notices_all: dict[str, list[str]] = {}
        for reason, ids in sorted(by_reason.items()):
            moved, before = await undeliverable.mark_refused(conn, clinic.id, ids, f"refused by clinic: {reason}", now)
            settled = {*moved, *before}
            rest = [i for i in ids if i not in settled]
            notices_moved, notices_before = (
                await notices.mark_refused(conn, clinic.id, rest, f"refused by clinic: {reason}", now)
                if rest
                else ([], [])
            )
            refused.update(str(i) for i in (*moved, *before, *notices_moved, *notices_before))
            if moved:
                moved_all[reason] = [str(i) for i in moved]
            if notices_moved:
                notices_all[reason] = [str(i) for i in notices_moved]
        if moved_all:
            await audit.append(
                conn,
                at=now,
                actor=f"clinic:{clinic.slug}",
                action="delivery.refused",
                subject=clinic.slug,
                details={"by_reason": moved_all},
            )
        if notices_all:
            await audit.append(
                conn,
                at=now,
                actor=f"clinic:{clinic.slug}",
                action="notice.refused",
                subject=clinic.slug,
                details={"by_reason": notices_all},
            )
    return RefusalResult(
        refused=[r.delivery_id for r in request.refusals if r.delivery_id in refused],
        unknown=[r.delivery_id for r in request.refusals if r.delivery_id not in refused],
    )
