"""The reconciler: Redis is a doorbell that may lose everything, so due outbox rows are rung again."""

from __future__ import annotations

import logging
from datetime import timedelta

from referral_broker.services.clinic_auth import NONCE_RETENTION
from referral_broker.services.context import BrokerContext
from referral_broker.store import nonces, outbox

log = logging.getLogger(__name__)

BATCH = 1000
#: The periodic run leaves rows younger than this alone: whoever made them rang for them a moment ago,
#: and after a burst re-ringing thousands of queued jobs took much of the worker's time. A ring that was
#: lost is made up for by the next run.
GRACE = timedelta(seconds=10)


async def reconcile(ctx: BrokerContext, *, grace: timedelta = timedelta(0)) -> int:
    """Ring the doorbell for every unfinished outbox row due at least `grace` ago; return how many were rung.

    Safe to run at any time and from several workers: the job ids are deterministic, so a job that
    is already queued or running is not queued twice, and the jobs themselves are idempotent.
    """
    now = ctx.clock()
    rung = 0
    for item in await outbox.due(ctx.pool, now - grace, BATCH * 10):
        await ctx.doorbell.ring(item.job, item.subject_id)
        rung += 1
    forgotten = await nonces.forget_older_than(ctx.pool, now - NONCE_RETENTION)
    if rung or forgotten:
        log.info("reconciler rang %d due jobs and forgot %d old request nonces", rung, forgotten)
    return rung
