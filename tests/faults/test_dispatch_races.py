"""Two workers and the reconciler racing over the same referrals, 200 randomised runs: each effect once.

Each run is one referral to one to three clinics (one of which has a notice channel, so the notice
planning races too). Two or three dispatchers (as two workers would, or a retry) and the reconciler,
whose rings start yet another dispatch, are started with random small delays and run concurrently on
the real PostgreSQL. Expected: every delivery made available once (one attempt, one signed receipt),
one `delivery.dispatched` event per referral, its outbox row done, and one "available" notice for the
clinic with a channel, however the runs interleave. The seed is printed on failure.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import msgspec
import pytest

from referral_broker.services import dispatch, intake, notifications, reconcile
from referral_broker.services.context import BrokerContext
from referral_broker.services.ports import JOB_DISPATCH
from referral_broker.services.settings import Settings
from referral_protocol.referral import ReferralRequest
from tests.conftest import RecordingDoorbell, enrol_clinic, referral_json

RUNS = 200
AT_ONCE = 20
SEED = 20261122
CLINICS = ["klinikk-a", "klinikk-b", "klinikk-c"]


class RacingDoorbell:
    """The reconciler's rings start a dispatch at once, as a worker picking the job up would."""

    def __init__(self, ctx: BrokerContext, rng: random.Random) -> None:
        self.ctx = ctx
        self.rng = rng
        self.started: list[asyncio.Task[Any]] = []

    async def ring(self, job: str, subject_id: uuid.UUID) -> None:
        if job == JOB_DISPATCH:
            self.started.append(asyncio.create_task(_after(self.rng.random() / 200, self._dispatch(subject_id))))

    async def withdraw(self, job: str, subject_ids: list[uuid.UUID]) -> None:
        """Jobs already started stay started, as in arq: withdrawing saves work, it cancels nothing."""

    async def _dispatch(self, rid: uuid.UUID) -> None:
        await dispatch.dispatch_referral(self.ctx, rid)


async def _after(delay: float, work: Coroutine[Any, Any, Any]) -> Any:
    await asyncio.sleep(delay)
    return await work


@pytest.fixture
async def racing_ctx(settings: Settings) -> AsyncIterator[BrokerContext]:
    ctx = await BrokerContext.open(settings, RecordingDoorbell(), pool_size=12)
    for slug in CLINICS:
        await enrol_clinic(ctx, slug)
    await notifications.set_contact(ctx, "klinikk-b", email=None, webhook_url="http://127.0.0.1:9/hook", actor="t")
    yield ctx
    await ctx.close()


async def test_two_workers_and_the_reconciler_racing_make_each_effect_once(racing_ctx: BrokerContext) -> None:
    ctx = racing_ctx
    rng = random.Random(SEED)
    expected_deliveries = 0
    for batch in range(RUNS // AT_ONCE):
        ctx.doorbell = RecordingDoorbell()  # intake's own rings are not run: the racers below are the workers
        rids = []
        for i in range(AT_ONCE):
            chosen = rng.sample(CLINICS, rng.randint(1, 3))
            expected_deliveries += len(chosen)
            request = msgspec.convert(referral_json(chosen, description=f"race {batch}.{i}"), ReferralRequest)
            receipt = await intake.submit(ctx, request)
            rids.append(await ctx.pool.fetchval("SELECT id FROM referrals WHERE reference = $1", receipt.reference))
        racing = RacingDoorbell(ctx, rng)
        ctx.doorbell = racing
        racers: list[Coroutine[Any, Any, Any]] = [
            _after(rng.random() / 100, dispatch.dispatch_referral(ctx, rid))
            for rid in rids
            for _ in range(rng.randint(2, 3))
        ]
        racers.append(_after(rng.random() / 100, reconcile.reconcile(ctx)))
        rng.shuffle(racers)
        await asyncio.gather(*racers)
        await asyncio.gather(*racing.started)

        facts = await ctx.pool.fetchrow(
            """SELECT
                 (SELECT count(*) FROM deliveries WHERE status <> 'available' OR attempts <> 1) AS wrong_deliveries,
                 (SELECT count(*) FROM deliveries) AS deliveries,
                 (SELECT count(*) FROM dispatch_receipts) AS receipts,
                 (SELECT count(*) FROM audit_events WHERE action = 'delivery.dispatched') AS events,
                 (SELECT count(DISTINCT subject) FROM audit_events WHERE action = 'delivery.dispatched') AS subjects,
                 (SELECT count(*) FROM outbox WHERE job = 'dispatch_referral' AND done_at IS NULL) AS unfinished,
                 (SELECT count(*) FROM clinic_notifications) AS notices"""
        )
        referrals = (batch + 1) * AT_ONCE
        assert dict(facts) == {
            "wrong_deliveries": 0,
            "deliveries": expected_deliveries,
            "receipts": expected_deliveries,
            "events": referrals,
            "subjects": referrals,
            "unfinished": 0,
            "notices": 1,  # klinikk-b has never pulled: one notice for the whole unpulled batch
        }, f"seed {SEED}, batch {batch}: {dict(facts)}"
