"""PostgreSQL stopped with `pg_ctl stop -m immediate` in the middle of a burst of submissions.

Expected outcome: each submission either got `201` — and then its referral is there after PostgreSQL
restarts, because the referral and its outbox row are one committed statement — or a clean failure
(`500` with a generic JSON body and an incident id, or a connection error), never a hang or a
traceback. A client that retries with the same `Idempotency-Key` gets the first receipt back (`200`)
when the first attempt had committed, and a new referral (`201`) when it had not: one referral per
key, whatever the client saw. The server and worker are not restarted: they reconnect, and every
referral is then dispatched exactly once.

PostgreSQL here is a durable cluster of the test's own on a free port (fsync on: the crash is real).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

import devstack
from devstack import RedisServer
from referral_broker.store.migrate import apply_migrations
from tests.conftest import referral_json
from tests.faults.stack import DELIVERED_ONCE, as_e2e_broker, assert_each_effect_once, each_effect_once, fault_stack
from tests.processes import wait_for_value

pytestmark = pytest.mark.e2e

BURST = 60


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[devstack.PostgresServer]:
    server = devstack.start_postgres(tmp_path / "pg", durable=True)
    try:
        yield server
    finally:
        server.stop("immediate")


async def _count_referrals(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM referrals"))
    finally:
        await conn.close()


async def _submit_until_answered(client: httpx.AsyncClient, body: dict[str, object], key: str) -> httpx.Response:
    """What a careful client does: retry with the same key until the server answers something other than 5xx."""
    deadline = time.monotonic() + 60
    while True:
        try:
            response = await client.post("/api/v1/referrals", json=body, headers={"Idempotency-Key": key})
            if response.status_code < 500:
                return response
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"no answer for {key}"
        await asyncio.sleep(0.2)


async def test_postgres_stopped_immediately_mid_burst_keeps_every_201_and_retries_create_no_second(
    own_postgres: devstack.PostgresServer, own_redis: RedisServer, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(own_postgres.url)
    await apply_migrations(conn)
    await conn.close()
    stack = fault_stack(tmp_path, own_postgres.url, own_redis.url)
    try:
        stack.serve()
        as_e2e_broker(stack).clinic("klinikk-a")
        worker = stack.worker()
        await wait_for_value(own_postgres.url, "SELECT count(*) FROM worker_heartbeats", 1)
        bodies = [referral_json(["klinikk-a"], description=f"burst {i}: vondt i ryggen") for i in range(BURST)]
        keys = [f"burst-{i:04d}-0123456789abcdef" for i in range(BURST)]

        async with httpx.AsyncClient(base_url=stack.url, timeout=30, limits=httpx.Limits(max_connections=6)) as client:

            async def first_try(i: int) -> httpx.Response | httpx.HTTPError:
                try:
                    return await client.post("/api/v1/referrals", json=bodies[i], headers={"Idempotency-Key": keys[i]})
                except httpx.HTTPError as exc:
                    return exc

            burst = asyncio.gather(*(first_try(i) for i in range(BURST)))
            deadline = time.monotonic() + 60
            while await _count_referrals(own_postgres.url) < 8:  # some have committed: now crash it
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            await asyncio.to_thread(own_postgres.stop, "immediate")
            first = await burst
            late_worker = stack.worker("late-worker")  # started while PostgreSQL is away: it waits for it
            await asyncio.sleep(2)

            seen_201 = {
                keys[i]: r.json() for i, r in enumerate(first) if isinstance(r, httpx.Response) and r.status_code == 201
            }
            failed = [r for r in first if not (isinstance(r, httpx.Response) and r.status_code == 201)]
            assert seen_201 and failed, "the crash did not fall inside the burst"
            for r in failed:  # failures are clean: no traceback, nothing echoed
                if isinstance(r, httpx.Response):
                    assert r.status_code == 500, r.text
                    assert set(r.json()) == {"error", "incident"} and "Traceback" not in r.text

            await asyncio.to_thread(own_postgres.start)  # same port, same data; server and worker keep running

            references = {r["reference"] for r in await _all_referrals(own_postgres.url)}
            assert {receipt["reference"] for receipt in seen_201.values()} <= references  # every 201 survived

            retried = await asyncio.gather(*(_submit_until_answered(client, bodies[i], keys[i]) for i in range(BURST)))
            for i, response in enumerate(retried):
                assert response.status_code in (200, 201), response.text
                if keys[i] in seen_201:  # the first receipt again, the same private link included
                    assert response.status_code == 200
                    assert response.json()["reference"] == seen_201[keys[i]]["reference"]
                    assert response.json()["manage_url"] == seen_201[keys[i]]["manage_url"]
            assert await _count_referrals(own_postgres.url) == BURST  # one referral per key

            again = await asyncio.gather(*(_submit_until_answered(client, bodies[i], keys[i]) for i in range(BURST)))
            assert {r.status_code for r in again} == {200}
            assert [r.json()["reference"] for r in again] == [r.json()["reference"] for r in retried]

        await wait_for_value(own_postgres.url, DELIVERED_ONCE, BURST, timeout=120)
        assert_each_effect_once(await each_effect_once(own_postgres.url), BURST, BURST)
        for w in (worker, late_worker):
            assert w.process is not None and w.process.poll() is None, w.output()[-2000:]
        assert "worker lost Redis or PostgreSQL" in late_worker.output()
    finally:
        stack.down()


async def _all_referrals(database_url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(await conn.fetch("SELECT reference FROM referrals"))
    finally:
        await conn.close()
