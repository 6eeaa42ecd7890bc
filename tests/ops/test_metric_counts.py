"""The counters behind /metrics (migration 0010): kept by triggers as rows change, so a scrape reads a
few rows instead of counting every referral ever made. They must agree with a recount of the tables
after every kind of change, hold still when the sweep cuts times to the day, add up across many
connections at once, survive their connections and start from what a database already held."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from referral_broker.services import clinic_inbox, dispatch, intake, manage, retention
from referral_broker.services.context import BrokerContext
from referral_broker.services.settings import Settings
from referral_broker.store import clinics, monitoring
from referral_broker.store.migrate import apply_migrations
from referral_protocol.enrolment import AckRequest
from referral_protocol.referral import ReferralRequest
from tests.conftest import RecordingDoorbell, Servers, enrol_clinic, migrated_up_to, referral_json

BOUNDS = [0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400]


async def _recount(conn: Any) -> dict[str, Any]:
    """What the scrape used to compute: counts over the whole tables."""
    row = await conn.fetchrow(
        """SELECT (SELECT count(*) FROM referrals) AS submissions,
                  (SELECT count(*) FROM deliveries WHERE dispatched_at IS NOT NULL) AS dispatches,
                  (SELECT count(*) FROM deliveries WHERE acknowledged_at IS NOT NULL) AS acknowledgements,
                  (SELECT count(*) FROM clinic_notifications WHERE status = 'sent') AS notifications_sent,
                  (SELECT count(*) FROM clinic_notifications WHERE status = 'failed') AS notifications_failed"""
    )
    by_status = {
        r["status"]: r["n"] for r in await conn.fetch("SELECT status, count(*) n FROM deliveries GROUP BY status")
    }
    seconds = [
        float(s)
        for s in await conn.fetchval(
            """SELECT coalesce(array_agg(extract(epoch FROM dispatched_at - created_at)::float8), '{}')
               FROM deliveries WHERE dispatched_at IS NOT NULL"""
        )
    ]
    return {
        **dict(row),
        "by_status": by_status,
        "cumulative": [sum(1 for s in seconds if s <= b) for b in BOUNDS],
        "latency_count": len(seconds),
        "latency_sum": sum(seconds),
    }


async def _counted(conn: Any) -> dict[str, Any]:
    t = await monitoring.totals(conn)
    h = await monitoring.latency_histogram(conn)
    return {
        "submissions": t.submissions,
        "dispatches": t.dispatches,
        "acknowledgements": t.acknowledgements,
        "notifications_sent": t.notifications_sent,
        "notifications_failed": t.notifications_failed,
        "by_status": {k: v for k, v in (await monitoring.deliveries_by_status(conn)).items() if v},
        "cumulative": h.cumulative,
        "latency_count": h.count,
        "latency_sum": h.total_seconds,
    }


def _same(counted: dict[str, Any], recounted: dict[str, Any]) -> None:
    assert counted.pop("latency_sum") == pytest.approx(recounted.pop("latency_sum"), abs=1e-6)
    assert counted == recounted


async def _submit(ctx: BrokerContext, slugs: list[str]) -> tuple[uuid.UUID, str]:
    request = msgspec.convert(referral_json(slugs), ReferralRequest)
    receipt = await intake.submit(ctx, request)
    rid: uuid.UUID = await ctx.pool.fetchval("SELECT id FROM referrals WHERE reference = $1", receipt.reference)
    return rid, receipt.manage_url.rsplit("/", 1)[1]


async def _activity(ctx: BrokerContext) -> None:
    """Every kind of change a delivery goes through: queued, available, acknowledged, cancelled."""
    await enrol_clinic(ctx, "klinikk-a")
    await enrol_clinic(ctx, "klinikk-b")
    made = [await _submit(ctx, ["klinikk-a", "klinikk-b"]) for _ in range(5)]
    for rid, _ in made[:4]:
        await dispatch.dispatch_referral(ctx, rid)
    clinic = await clinics.by_slug(ctx.pool, "klinikk-a")
    assert clinic is not None
    page = await clinic_inbox.list_inbox(ctx, clinic, 10)
    await clinic_inbox.acknowledge(ctx, clinic, AckRequest(delivery_ids=[i.delivery_id for i in page.items[:3]]))
    assert await manage.withdraw(ctx, made[3][1]) is not None  # b's copy cancelled while in its inbox
    assert await manage.withdraw(ctx, made[4][1]) is not None  # never dispatched: both cancelled


async def test_the_counters_agree_with_a_recount_and_hold_still_through_the_sweep(broker: BrokerContext) -> None:
    assert sorted(await broker.pool.fetchval("SELECT metric_latency_bounds()")) == BOUNDS
    await _activity(broker)
    recounted = await _recount(broker.pool)
    assert recounted["by_status"].keys() == {"acknowledged", "available", "cancelled"}  # the scenario ran
    assert recounted["submissions"] == 5 and recounted["dispatches"] == 10  # one run took all five along
    before = await _counted(broker.pool)
    _same(dict(before), recounted)

    # The sweep cuts every time to the day: a recount of latencies now says something else (a delivery
    # made available a moment after midnight moves by a day), the counters do not move.
    run = await retention.anonymise_expired(broker, now=datetime.now(UTC) + timedelta(days=200))
    assert run.anonymised == 5
    after = await _counted(broker.pool)
    swept = dict(before["by_status"])
    swept["expired"] = swept.pop("available")  # what waited in an inbox expired with its referral
    assert after == before | {"by_status": swept}
    assert (await _recount(broker.pool))["by_status"] == after["by_status"]


async def test_many_connections_at_once_add_up_without_waiting_on_each_other(broker: BrokerContext) -> None:
    await enrol_clinic(broker, "klinikk-a")
    made = await asyncio.gather(*(_submit(broker, ["klinikk-a"]) for _ in range(24)))
    await asyncio.gather(*(dispatch.dispatch_referral(broker, rid) for rid, _ in made))
    backends = await broker.pool.fetchval("SELECT count(DISTINCT backend) FROM metric_counts")
    assert backends > 1  # the pool's connections each counted on rows of their own
    _same(await _counted(broker.pool), await _recount(broker.pool))
    assert (await monitoring.totals(broker.pool)).dispatches == 24


async def test_rows_of_connections_that_closed_are_folded_and_nothing_is_lost(
    broker: BrokerContext, settings: Settings
) -> None:
    await _activity(broker)
    before = await _counted(broker.pool)
    # A connection of its own withdraws nothing but moves two deliveries, then goes away.
    gone = await asyncpg.connect(settings.database_url)
    pid = await gone.fetchval("SELECT pg_backend_pid()")
    await gone.execute(
        """UPDATE deliveries SET status = 'cancelled'
           WHERE id IN (SELECT id FROM deliveries WHERE status = 'available' LIMIT 2)"""
    )
    await gone.close()
    was = before["by_status"]
    moved = was | {"available": was["available"] - 2, "cancelled": was["cancelled"] + 2}
    for _ in range(100):  # the server ends the backend a moment after the client closed it
        if not await broker.pool.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
            break
        await asyncio.sleep(0.02)
    others = "SELECT count(*) FROM metric_counts WHERE backend <> $1 AND backend <> 0"
    live = await broker.pool.fetchval(others, pid)  # the pool's connections, still open

    assert await monitoring.fold_metric_counts(broker.pool) == 2  # its two rows: available, cancelled
    assert not await broker.pool.fetchval("SELECT count(*) FROM metric_counts WHERE backend = $1", pid)
    assert await broker.pool.fetchval(others, pid) == live
    assert await _counted(broker.pool) == before | {"by_status": moved}
    assert await monitoring.fold_metric_counts(broker.pool) == 0


async def test_the_migration_counts_what_the_database_already_held(
    servers: Servers, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every migration but the counters' own (0010, 0011): what today's code needs of later ones (0012's
    # deliveries.served_at, read by the inbox listing; 0013's clinic columns, written by enrolment) is there.
    async with migrated_up_to(servers, monkeypatch, lambda file: file[:4] not in ("0010", "0011")) as (url, conn):
        assert not await conn.fetchval("SELECT to_regclass('metric_counts') IS NOT NULL")
        ctx = await BrokerContext.open(msgspec.structs.replace(settings, database_url=url), RecordingDoorbell())
        try:
            await _activity(ctx)
        finally:
            await ctx.close()
        assert await apply_migrations(conn) == ["0010_metric_counts.sql", "0011_metric_counts_fast_path.sql"]
        _same(await _counted(conn), await _recount(conn))


async def test_a_latency_on_a_bound_counts_in_that_bound_s_bucket(broker: BrokerContext) -> None:
    await enrol_clinic(broker, "klinikk-a")
    made = [await _submit(broker, ["klinikk-a"]) for _ in range(5)]
    seconds = [0.5, 0.7, 3600.0, 86400.0, 90000.0]
    async with broker.pool.acquire() as conn, conn.transaction():  # one statement, as a dispatch run makes
        await conn.execute(
            """UPDATE deliveries d
               SET status = 'available', dispatched_at = d.created_at + make_interval(secs => s.secs)
               FROM unnest($1::uuid[], $2::float8[]) AS s(referral_id, secs) WHERE d.referral_id = s.referral_id""",
            [rid for rid, _ in made],
            seconds,
        )
    h = await monitoring.latency_histogram(broker.pool)
    assert dict(zip(h.bounds, h.cumulative, strict=True)) == {
        0.5: 1,
        1: 2,
        2: 2,
        5: 2,
        10: 2,
        30: 2,
        60: 2,
        300: 2,
        900: 2,
        3600: 3,
        21600: 3,
        86400: 4,
    }
    assert h.count == 5 and h.total_seconds == pytest.approx(sum(seconds))
    _same(await _counted(broker.pool), await _recount(broker.pool))


def test_no_statement_sets_a_dispatch_or_acknowledgement_time_back_to_null() -> None:
    """Migration 0011 counts a statement's new dispatches and acknowledgements only when its new rows hold
    more of those times than its old rows did; that is exact only while no statement clears one."""
    store = Path(__file__).parents[2] / "src" / "referral_broker" / "store"
    clearing = re.compile(r"\b(dispatched_at|acknowledged_at)\s*=\s*NULL\b", re.IGNORECASE)
    paths = sorted([*store.glob("*.py"), *store.glob("migrations/*.sql")])
    assert len(paths) > 10  # the store's modules and migrations were found
    assert [f"{p.name}: {m.group(0)}" for p in paths for m in clearing.finditer(p.read_text())] == []
