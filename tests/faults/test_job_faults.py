"""Faults around one job, run by a real arq worker in this process over the run's PostgreSQL and Redis.

Expected outcomes:
- a ring that fails after the referral committed: the reconciler rings again and it is dispatched once;
- a job whose Redis entry expired before a worker took it: arq drops it ("job expired"), the outbox
  row stays due, the reconciler rings again, dispatched once;
- a job that runs past its timeout: arq cancels it (its transaction rolls back), the reconciler rings
  again, dispatched once, both attempts counted;
- a poison referral whose dispatch always fails: `dead` after `REFERRAL_BROKER_DISPATCH_MAX_TRIES`
  attempts, audited, counted in /metrics and flagged on the dashboard; the others dispatched as usual.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import pytest
from arq.connections import create_pool
from arq.constants import job_key_prefix
from arq.worker import Worker
from litestar.testing import AsyncTestClient

from referral_broker.adapters.arq_doorbell import WITHDRAWN_KEPT_MS, ArqDoorbell, redis_settings
from referral_broker.queue import jobs
from referral_broker.queue.worker import worker_options
from referral_broker.services import intake, monitoring
from referral_broker.services.context import BrokerContext
from referral_broker.services.ports import JOB_DISPATCH, job_id
from referral_broker.services.settings import Settings
from referral_broker.web.app import create_app
from referral_protocol.referral import ReferralRequest
from tests.conftest import RecordingDoorbell, enrol_clinic, referral_json
from tests.faults.stack import queued_dispatch_jobs


class RefusingDoorbell:
    async def ring(self, job: str, subject_id: uuid.UUID) -> None:
        raise RuntimeError("injected: the process failed between commit and enqueue")


async def run_worker_until_idle(settings: Settings, *, reconcile_at_start: bool = True, **extra: Any) -> Worker:
    """A real arq worker with the product's options, in burst mode: it stops once the queue is empty."""
    options: dict[str, Any] = {
        **worker_options(settings),
        "burst": True,
        "handle_signals": False,
        "poll_delay": 0.01,
        **extra,
    }
    if not reconcile_at_start:

        async def open_only(ctx: dict[str, Any]) -> None:
            ctx["broker"] = await BrokerContext.open(settings, ArqDoorbell(settings.redis_url, redis=ctx["redis"]))

        options["on_startup"] = open_only
    options["cron_jobs"] = []  # the crons' own schedules are not what these tests are about
    worker = Worker(**options)
    try:
        await asyncio.wait_for(worker.async_run(), timeout=60)
    finally:
        await worker.close()
    return worker


@pytest.fixture
async def ctx(broker: BrokerContext) -> AsyncIterator[BrokerContext]:
    await enrol_clinic(broker, "klinikk-a")
    yield broker


async def _submit(ctx: BrokerContext, n: int = 1) -> list[uuid.UUID]:
    ids = []
    for i in range(n):
        request = msgspec.convert(referral_json(["klinikk-a"], description=f"job fault {i}"), ReferralRequest)
        receipt = await intake.submit(ctx, request)
        ids.append(await ctx.pool.fetchval("SELECT id FROM referrals WHERE reference = $1", receipt.reference))
    return ids


async def _effects(ctx: BrokerContext, rid: uuid.UUID) -> tuple[str, int, int, int]:
    row = await ctx.pool.fetchrow(
        """SELECT (SELECT string_agg(status, ',') FROM deliveries WHERE referral_id = $1) AS status,
                  (SELECT count(*) FROM dispatch_receipts r JOIN deliveries d ON d.id = r.delivery_id
                     WHERE d.referral_id = $1) AS receipts,
                  (SELECT count(*) FROM audit_events WHERE action = 'delivery.dispatched' AND subject = $1::text)
                     AS events,
                  (SELECT attempts FROM outbox WHERE subject_id = $1 AND job = 'dispatch_referral') AS attempts""",
        rid,
    )
    return row["status"], row["receipts"], row["events"], row["attempts"]


async def test_exception_between_commit_and_enqueue_is_delivered_by_the_reconciler(
    ctx: BrokerContext, settings: Settings, redis_url: str
) -> None:
    ctx.doorbell = RefusingDoorbell()
    [rid] = await _submit(ctx)  # accepted: the failed ring is logged and left to the reconciler
    redis = await create_pool(redis_settings(redis_url))
    assert await redis.zcard("arq:queue") == 0  # nothing reached Redis
    await run_worker_until_idle(settings)  # a starting worker reconciles
    assert await _effects(ctx, rid) == ("available", 1, 1, 1)
    await redis.aclose()


async def test_jobs_of_referrals_taken_along_are_withdrawn_and_never_run(
    ctx: BrokerContext, settings: Settings, redis_url: str
) -> None:
    ctx.doorbell = ArqDoorbell(redis_url)
    rids = await _submit(ctx, 10)  # ten jobs waiting in arq's queue
    redis = await create_pool(redis_settings(redis_url))
    assert queued_dispatch_jobs(redis_url) == 10
    # One job at a time: the first run takes the nine others along and withdraws their jobs.
    worker = await run_worker_until_idle(settings, reconcile_at_start=False, max_jobs=1)
    assert (worker.jobs_complete, worker.jobs_failed, worker.jobs_retried) == (1, 0, 0)
    assert [await _effects(ctx, rid) for rid in rids] == [("available", 1, 1, 1)] + [("available", 1, 1, 0)] * 9
    assert queued_dispatch_jobs(redis_url) == 0
    keys = [job_key_prefix + job_id(JOB_DISPATCH, rid) for rid in rids[1:]]
    ttls = [await redis.pttl(k) for k in keys]
    assert all(0 < ttl <= WITHDRAWN_KEPT_MS for ttl in ttls)  # kept a minute, then gone
    await redis.aclose()


async def test_job_that_outlives_arq_expiry_is_rung_again_and_dispatched_once(
    ctx: BrokerContext, settings: Settings, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    [rid] = await _submit(ctx)
    redis = await create_pool(redis_settings(redis_url))
    await redis.enqueue_job(JOB_DISPATCH, str(rid), _job_id=job_id(JOB_DISPATCH, rid), _expires=0.05)
    await asyncio.sleep(0.2)  # its job entry has expired; the queue still names it
    with caplog.at_level(logging.WARNING, logger="arq.worker"):
        await run_worker_until_idle(settings, reconcile_at_start=False)
    assert "expired" in caplog.text
    assert await _effects(ctx, rid) == ("queued", 0, 0, 0)  # arq dropped it; the outbox row is still due
    await run_worker_until_idle(settings)  # the reconciler rings again
    assert await _effects(ctx, rid) == ("available", 1, 1, 1)
    await redis.aclose()


async def test_job_past_its_timeout_is_cut_off_rung_again_and_dispatched_once(
    ctx: BrokerContext, settings: Settings, redis_url: str
) -> None:
    quick = msgspec.structs.replace(settings, job_timeout=2)
    [rid] = await _submit(ctx)
    await ArqDoorbell(redis_url).ring(JOB_DISPATCH, rid)
    blocker = await asyncpg.connect(settings.database_url)
    tx = blocker.transaction()
    await tx.start()
    await blocker.execute("LOCK TABLE dispatch_receipts IN SHARE MODE")  # the job waits inside its transaction …
    try:
        await run_worker_until_idle(quick, reconcile_at_start=False)  # … until arq's timeout cancels it
    finally:
        await tx.rollback()
        await blocker.close()
    assert await _effects(ctx, rid) == ("queued", 0, 0, 1)  # rolled back; the attempt counted
    await run_worker_until_idle(quick)
    assert await _effects(ctx, rid) == ("available", 1, 1, 2)


async def test_poison_delivery_is_dead_after_the_allowed_tries_visible_and_others_unaffected(
    ctx: BrokerContext, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    tries = 3
    limited = msgspec.structs.replace(settings, dispatch_max_tries=tries)
    poison, *healthy = await _submit(ctx, 4)
    # The poison referral's dispatch fails every time with a transient error (serialization failure),
    # so it is retried with back-off (shortened here) until it runs out of tries.
    monkeypatch.setattr(jobs, "backoff_seconds", lambda attempt: 0.05)
    await ctx.pool.execute(
        """CREATE TABLE fault_poison (referral_id uuid PRIMARY KEY);
           CREATE OR REPLACE FUNCTION fault_poison() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
             IF EXISTS (SELECT 1 FROM fault_poison p JOIN deliveries d ON d.referral_id = p.referral_id
                        WHERE d.id = NEW.delivery_id) THEN
               RAISE EXCEPTION 'injected poison' USING ERRCODE = '40001';
             END IF;
             RETURN NEW;
           END $$;
           CREATE OR REPLACE TRIGGER fault_poison BEFORE INSERT ON dispatch_receipts
           FOR EACH ROW EXECUTE FUNCTION fault_poison();"""
    )
    await ctx.pool.execute("INSERT INTO fault_poison VALUES ($1)", poison)
    try:
        await run_worker_until_idle(limited)
    finally:
        await ctx.pool.execute(
            "DROP TRIGGER fault_poison ON dispatch_receipts; DROP FUNCTION fault_poison(); DROP TABLE fault_poison"
        )

    assert await _effects(ctx, poison) == ("dead", 0, 0, tries + 1)  # the last attempt found it out of tries
    for rid in healthy:  # dispatched by its own job (one attempt) or taken along by another's (none)
        effects = await _effects(ctx, rid)
        assert effects[:3] == ("available", 1, 1)
        assert effects[3] in (0, 1)
    dead_events = await ctx.pool.fetch("SELECT details FROM audit_events WHERE action = 'delivery.dead'")
    assert [e["details"]["attempts"] for e in dead_events] == [tries]

    # Visible: the dashboard flags it, and /metrics counts it.
    board = await monitoring.dashboard(ctx)
    assert any("dead deliver" in f.text for f in board.flags), board.flags
    app = create_app(limited, doorbell_factory=lambda s: RecordingDoorbell())
    async with AsyncTestClient(app=app) as client:
        metrics = (await client.get("/metrics")).text
    assert 'referral_broker_deliveries{status="dead"} 1.0' in metrics
    assert 'referral_broker_deliveries{status="available"} 3.0' in metrics
    assert 'referral_broker_failures_total{reason="dispatch:gave_up"} 1.0' in metrics
    assert f'referral_broker_failures_total{{reason="dispatch:SerializationError"}} {float(tries)}' in metrics

    # Nothing rings it again by itself: the reconciler leaves a dead referral to an operator.
    await run_worker_until_idle(limited)
    assert await _effects(ctx, poison) == ("dead", 0, 0, tries + 1)
