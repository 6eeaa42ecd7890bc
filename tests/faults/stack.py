"""The real programs (`serve`, `worker`, `referral-clinic`) over servers a fault test may kill.

A fault test starts its own Redis (and, where it stops PostgreSQL, its own PostgreSQL) on free ports in
its own folder, so killing or stopping them disturbs nothing else. The programs are started by the one
launcher, `devstack.stack.Stack`, and each stopped by its own process id when the test ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from pathlib import Path

import asyncpg
import httpx
import redis

from devstack.stack import Stack
from referral_broker.services.ports import JOB_DISPATCH
from tests.conftest import referral_json
from tests.e2e.test_pipeline_processes import PASSPHRASE, Broker

DELIVERED_ONCE = """
    SELECT count(*) FROM referrals r
    WHERE (SELECT count(*) FROM deliveries d WHERE d.referral_id = r.id AND d.status = 'available') =
          (SELECT count(*) FROM deliveries d WHERE d.referral_id = r.id)
"""


def queued_dispatch_jobs(redis_url: str) -> int:
    """Dispatch jobs in arq's queue (waiting or running), whatever else it holds."""
    members = redis.Redis.from_url(redis_url).zrange("arq:queue", 0, -1)
    return sum(1 for m in members if m.decode().startswith(f"{JOB_DISPATCH}:"))


def fault_stack(folder: Path, database_url: str, redis_url: str, **extra: str) -> Stack:
    """The one launcher over the test's servers, configured as the end-to-end tests run the programs."""
    return Stack(
        folder,
        database_url=database_url,
        redis_url=redis_url,
        base_env={"PATH": "/usr/bin:/bin", "HOME": str(folder)},
        passphrase=PASSPHRASE,
        extra_env={
            "REFERRAL_BROKER_JOB_TIMEOUT": "3",
            "REFERRAL_BROKER_SUBMIT_RATE": "0",
            "REFERRAL_BROKER_SUBMIT_REFUSED_RATE": "0",
            **extra,
        },
    ).up()


def as_e2e_broker(stack: Stack) -> Broker:
    """The end-to-end suite's helper over this stack: it enrols with the CLIs and pulls with the tool."""
    return Broker(stack.url, stack.env, stack.folder, None, None, stack.database_url, stack.redis_url)  # type: ignore[arg-type]


async def submit_all(
    url: str, bodies: Iterable[dict[str, object]], *, keys: Iterable[str] | None = None, connections: int = 20
) -> list[object]:
    """Submit concurrently; each result is the response, or the transport error the client saw."""
    keys = list(keys) if keys is not None else None
    limits = httpx.Limits(max_connections=connections)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def one(i: int, body: dict[str, object]) -> object:
            headers = {"Idempotency-Key": keys[i]} if keys is not None else {}
            try:
                return await client.post("/api/v1/referrals", json=body, headers=headers)
            except httpx.HTTPError as exc:
                return exc

        return list(await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies))))


def referral_bodies(clinics: list[str], n: int, tag: str) -> list[dict[str, object]]:
    return [referral_json(clinics, description=f"{tag} {i}: vondt i kneet") for i in range(n)]


async def wait_for_backend_waiting(database_url: str, pattern: str, count: int = 1, timeout: float = 30) -> None:
    """Poll until `count` backends wait on a lock in a statement LIKE `pattern`."""
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            waiting = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1",
                pattern,
            )
            if waiting >= count:
                return
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    raise AssertionError(f"no {count} backends ever waited in {pattern!r}")


async def each_effect_once(database_url: str) -> dict[str, int]:
    """The exactly-once facts: per referral one dispatch event, per delivery one receipt."""
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            """SELECT
                 (SELECT count(*) FROM referrals) AS referrals,
                 (SELECT count(*) FROM deliveries) AS deliveries,
                 (SELECT count(*) FROM deliveries WHERE status = 'available') AS available,
                 (SELECT count(*) FROM dispatch_receipts) AS receipts,
                 (SELECT count(DISTINCT delivery_id) FROM dispatch_receipts) AS receipted_deliveries,
                 (SELECT count(*) FROM audit_events WHERE action = 'delivery.dispatched') AS dispatch_events,
                 (SELECT count(DISTINCT subject) FROM audit_events WHERE action = 'delivery.dispatched')
                    AS dispatched_referrals,
                 (SELECT count(*) FROM outbox WHERE job = 'dispatch_referral' AND done_at IS NULL) AS unfinished"""
        )
    finally:
        await conn.close()
    return dict(row)


class ClinicHold:
    """Holds dispatch jobs for chosen clinics *inside* their transaction, and lets each clinic's go at will.

    A test-only trigger makes the receipt insert take a shared advisory lock named after the clinic; the
    test holds that lock exclusively from a connection of its own. Dropped again by `close()`.
    """

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.held: dict[str, int] = {}

    @classmethod
    async def install(cls, database_url: str) -> ClinicHold:
        conn = await asyncpg.connect(database_url)
        await conn.execute("SET lock_timeout = '60s'")  # a transaction left open forever fails the test, not hangs it
        await conn.execute(
            """CREATE OR REPLACE FUNCTION fault_hold_receipt() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN PERFORM pg_advisory_xact_lock_shared(hashtext(NEW.clinic_id::text)); RETURN NEW; END $$;
               CREATE OR REPLACE TRIGGER fault_hold_receipt BEFORE INSERT ON dispatch_receipts
               FOR EACH ROW EXECUTE FUNCTION fault_hold_receipt();"""
        )
        return cls(conn)

    async def hold(self, slug: str) -> None:
        key = await self.conn.fetchval("SELECT hashtext(id::text) FROM clinics WHERE slug = $1", slug)
        await self.conn.execute("SELECT pg_advisory_lock($1)", key)
        self.held[slug] = key

    async def release(self, slug: str) -> None:
        await self.conn.execute("SELECT pg_advisory_unlock($1)", self.held.pop(slug))

    async def close(self) -> None:
        await self.conn.execute(
            """DROP TRIGGER IF EXISTS fault_hold_receipt ON dispatch_receipts;
               DROP FUNCTION IF EXISTS fault_hold_receipt()"""
        )
        await self.conn.close()  # ends whatever advisory lock is still held


def assert_each_effect_once(facts: dict[str, int], referrals: int, deliveries: int) -> None:
    assert facts == {
        "referrals": referrals,
        "deliveries": deliveries,
        "available": deliveries,
        "receipts": deliveries,
        "receipted_deliveries": deliveries,
        "dispatch_events": referrals,
        "dispatched_referrals": referrals,
        "unfinished": 0,
    }, facts
