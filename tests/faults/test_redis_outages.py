"""Redis is a doorbell that may lose everything: killed with jobs queued, or away for 30 s.

Expected outcome, stated once: while Redis is away the API still *accepts* referrals (201): the
referral and its outbox row commit in PostgreSQL, the failed ring is logged by id, and the reconciler
rings again when a worker reaches Redis. The worker is never restarted by hand: `referral-broker
worker`'s supervisor starts arq again once Redis answers, and a starting worker reconciles at once.
Every referral accepted is then made available exactly once: one `delivery.dispatched` audit event
per referral, one signed receipt per delivery, and the clinic tool writes each file once.

Redis here is a real `redis-server` of the test's own (no persistence), killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import asyncpg
import httpx
import pytest

from devstack import RedisServer
from devstack.stack import Stack
from tests.faults.stack import (
    DELIVERED_ONCE,
    ClinicHold,
    as_e2e_broker,
    assert_each_effect_once,
    each_effect_once,
    queued_dispatch_jobs,
    referral_bodies,
    submit_all,
    wait_for_backend_waiting,
)
from tests.processes import wait_for_value

pytestmark = pytest.mark.e2e

OUTAGE_SECONDS = 30
RECEIPT_INSERT = "%INSERT INTO dispatch_receipts%"


def _references(results: list[object]) -> list[str]:
    refs = []
    for r in results:
        assert isinstance(r, httpx.Response) and r.status_code == 201, r
        refs.append(r.json()["reference"])
    return refs


async def _hold_dispatch_inside_its_transaction(database_url: str) -> tuple[asyncpg.Connection, object]:
    """Jobs that start now block inside the dispatch transaction, before it can commit."""
    conn = await asyncpg.connect(database_url)
    tx = conn.transaction()
    await tx.start()
    await conn.execute("LOCK TABLE dispatch_receipts IN SHARE MODE")
    return conn, tx


async def test_redis_killed_with_referrals_queued_loses_none_and_the_worker_recovers(
    stack: Stack, own_redis: RedisServer
) -> None:
    stack.serve()
    as_e2e_broker(stack).clinic("klinikk-a")
    worker = stack.worker()
    await wait_for_value(stack.database_url, "SELECT count(*) FROM worker_heartbeats", 1)

    lock, tx = await _hold_dispatch_inside_its_transaction(stack.database_url)
    try:  # a failure here must not leave the table locked for the next test's clean database
        queued = _references(await submit_all(stack.url, referral_bodies(["klinikk-a"], 25, "queued")))
        # arq starts 20 at a time and the worker's pool has 5 connections: the first job takes the other
        # referrals along and blocks inside its transaction; the next four wait for the rows it holds; 15
        # wait for a connection, 5 in Redis' queue.
        await wait_for_backend_waiting(stack.database_url, RECEIPT_INSERT, 1)
        await wait_for_backend_waiting(stack.database_url, "%", 5)
        # Each referral's job waits or runs in arq's queue; the worker's cron jobs (heartbeat, reconcile)
        # may wait there too while every slot is held, so only the dispatch jobs are counted.
        assert queued_dispatch_jobs(stack.redis_url) == 25

        own_redis.kill()  # no persistence: every queued job and in-progress mark is gone
        during = _references(await submit_all(stack.url, referral_bodies(["klinikk-a"], 3, "during")))
        own_redis.start()  # the same port, empty
        await tx.rollback()  # type: ignore[attr-defined]
    finally:
        await lock.close()

    await wait_for_value(stack.database_url, DELIVERED_ONCE, len(queued) + len(during), timeout=90)
    assert_each_effect_once(await each_effect_once(stack.database_url), 28, 28)
    assert worker.process is not None and worker.process.poll() is None  # the same process, never restarted
    # The jobs Redis lost were rung again from the outbox; the rings that failed were logged by id only.
    assert "reconciler rang" in worker.output()
    assert "could not enqueue dispatch of referral" in stack.logs()


async def test_redis_away_for_30_seconds_during_submissions_and_work_loses_nothing(
    stack: Stack, own_redis: RedisServer
) -> None:
    stack.serve()
    e2e = as_e2e_broker(stack)
    clinic_a, clinic_b = e2e.clinic("klinikk-a"), e2e.clinic("klinikk-b")
    worker = stack.worker()
    before = _references(await submit_all(stack.url, referral_bodies(["klinikk-a"], 3, "before")))
    await wait_for_value(stack.database_url, DELIVERED_ONCE, 3)

    # Two jobs are at work when Redis goes, each held inside its dispatch transaction: the one for A
    # is let go during the outage (it commits, then cannot tell Redis); the one for B is still inside
    # its transaction when the worker gives up on its connection to Redis, and is let go only later.
    hold = await ClinicHold.install(stack.database_url)
    try:
        await hold.hold("klinikk-a")
        await hold.hold("klinikk-b")
        in_flight = _references(await submit_all(stack.url, referral_bodies(["klinikk-a"], 1, "in flight a")))
        # A's run must be inside its transaction before B's referral is committed: a run that began after
        # both would take B's referral along (one job per referral, taking along what waits), and only one
        # transaction would be held. On a loaded machine the worker is often that late.
        await wait_for_backend_waiting(stack.database_url, RECEIPT_INSERT, 1)
        in_flight += _references(await submit_all(stack.url, referral_bodies(["klinikk-b"], 1, "in flight b")))
        await wait_for_backend_waiting(stack.database_url, RECEIPT_INSERT, 2)

        own_redis.kill()
        gone = time.monotonic()
        during: list[str] = []
        async with httpx.AsyncClient(base_url=stack.url, timeout=10) as client:
            for round_ in range(3):  # submissions spread over the outage, each accepted
                during += _references(
                    await submit_all(stack.url, referral_bodies(["klinikk-a", "klinikk-b"], 2, f"during {round_}"))
                )
                if round_ == 0:
                    await hold.release("klinikk-a")
                if round_ == 1:
                    await hold.release("klinikk-b")
                assert (await client.get("/healthz")).status_code == 200
                ready = await client.get("/readyz")
                assert (ready.status_code, ready.json()) == (503, {"postgres": "ok", "redis": "unreachable"})
                await asyncio.sleep(5)
    finally:
        await hold.close()
    assert time.monotonic() - gone < OUTAGE_SECONDS
    await asyncio.sleep(OUTAGE_SECONDS - (time.monotonic() - gone))
    own_redis.start()  # back after 30 s, empty

    accepted = before + in_flight + during
    deliveries = len(before) + len(in_flight) + 2 * len(during)
    await wait_for_value(stack.database_url, DELIVERED_ONCE, len(accepted), timeout=90)
    assert_each_effect_once(await each_effect_once(stack.database_url), len(accepted), deliveries)
    assert worker.process is not None and worker.process.poll() is None  # the same process, never restarted
    assert "worker lost Redis or PostgreSQL" in worker.output()
    assert "could not enqueue dispatch of referral" in stack.logs()

    for clinic in (clinic_a, clinic_b):
        inbox = stack.folder / "inbox" / clinic.name
        code, output = e2e.pull(clinic, inbox)
        assert code == 0, output
        code, output = e2e.pull(clinic, inbox)
        assert code == 0 and "pulled 0" in output, output
    received = sorted(p.stem for p in (stack.folder / "inbox").glob("*/*.json"))
    assert received == sorted(before + in_flight + during + during)  # the ones for both clinics twice
    acknowledged = "SELECT count(*) FROM deliveries WHERE status = 'acknowledged'"
    await wait_for_value(stack.database_url, acknowledged, deliveries)


async def test_a_paused_redis_does_not_hold_submissions_and_nothing_is_lost(
    stack: Stack, own_redis: RedisServer
) -> None:
    """Redis stopped (SIGSTOP), not gone: its connections stay open and simply never answer. Each
    submission still gets its 201 within the ring timeout, and once Redis goes on all are delivered once."""
    stack.serve()
    as_e2e_broker(stack).clinic("klinikk-a")
    httpx.post(f"{stack.url}/api/v1/referrals", json=referral_bodies(["klinikk-a"], 1, "warm")[0], timeout=10)
    pid = own_redis.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        during = _references(await submit_all(stack.url, referral_bodies(["klinikk-a"], 4, "paused")))
        # Generous: four concurrent rings each give up after RING_TIMEOUT_SECONDS; hanging would take for ever.
        assert time.monotonic() - started < 30
    finally:
        os.kill(pid, signal.SIGCONT)
    stack.worker()
    await wait_for_value(stack.database_url, DELIVERED_ONCE, len(during) + 1, timeout=90)
    assert_each_effect_once(
        await each_effect_once(stack.database_url), referrals=len(during) + 1, deliveries=len(during) + 1
    )
