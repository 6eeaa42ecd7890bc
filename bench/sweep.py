"""The anonymisation sweep over a year of history: generated with COPY and SQL, swept by the real command.

The table holds `rows` referrals spread evenly over the twelve months before 2026-01-01 (UTC), each
with a real AES-GCM contact copy bound to its id (the sweep decrypts it to keep the category), two
deliveries (mostly acknowledged; one in sixteen still waiting with a small stand-in envelope; the one
in twenty never dispatched stay queued), a dispatch receipt per dispatched delivery and a finished
outbox row. Each timed run is `referral-broker retention run --now T` with T one month later than the
last, so every run anonymises one more month: about rows / 12, on a table of the full size. The
command's fixed cost (start, connect, an empty sweep) is measured by a run with nothing due and
taken off.
"""

from __future__ import annotations

import asyncio
import random
import re
import statistics
import subprocess
import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import msgspec

from bench.stack import BIN, Stack
from referral_broker.crypto.broker_keys import load_keys
from referral_broker.domain.ids import new_id
from referral_broker.store import monitoring
from referral_protocol.referral import ContactCopy

START = datetime(2025, 1, 1, tzinfo=UTC)
YEAR = timedelta(days=365)
OSLO = ZoneInfo("Europe/Oslo")
CHUNK = 50_000
_CATEGORIES = ["physiotherapy", "dermatology", "psychology", "general"]
_COLUMNS = [
    "id",
    "reference",
    "created_at",
    "consent_version",
    "consent_text_sha256",
    "consent_at",
    "contact_ct",
    "email_bidx",
    "phone_bidx",
    "manage_token_hash",
    "retention_anchor",
]


def _records(keys_dir: object, first: int, count: int, total: int, rng: random.Random) -> list[tuple[object, ...]]:
    vault = load_keys(keys_dir).vault  # type: ignore[arg-type]
    plain = [
        msgspec.json.encode(
            ContactCopy(
                name="Kari Nordmann",
                email="kari.nordmann@example.no",
                phone="+4741234567",
                birth_date=date(1990, 5, 17),
                category=c,
            )
        )
        for c in _CATEGORIES
    ]
    out = []
    for i in range(first, first + count):
        created = START + YEAR * (i / total)
        rid = new_id(created)  # as intake makes them: the day first, then random
        anchor = None if i % 20 == 19 else created + timedelta(hours=2)
        out.append(
            (
                rid,
                f"BENCH-{i:010d}",
                created,
                "2026-11-01",
                "0" * 64,
                created,
                vault.encrypt(plain[i % len(plain)], bound_to=rid.bytes),
                rng.randbytes(32),
                rng.randbytes(32),
                rng.randbytes(32),
                anchor,
            )
        )
    return out


async def generate(database_url: str, keys_dir: object, rows: int, *, rebuild_indexes: bool = True) -> float:
    """Fill an empty, migrated database; returns the seconds it took."""
    t0 = time.perf_counter()
    rng = random.Random(rows)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            """INSERT INTO clinics (id, slug, name, status)
               VALUES (gen_random_uuid(), 'sweep-a', 'Klinikk A', 'active'),
                      (gen_random_uuid(), 'sweep-b', 'Klinikk B', 'active')"""
        )
        # Secondary indexes are dropped for the load and built again after it, sorted: much faster
        # than keeping them up to date row by row (the constraints' own indexes stay).
        indexes = await conn.fetch(
            """SELECT i.indexname, i.indexdef FROM pg_indexes i
               WHERE i.schemaname = 'public' AND i.tablename = ANY($1::text[])
                 AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)""",
            ["referrals", "deliveries", "dispatch_receipts", "outbox"],
        )
        indexes = indexes if rebuild_indexes else []
        for index in indexes:
            await conn.execute(f'DROP INDEX "{index["indexname"]}"')
        # Delivery ids as intake makes them (domain/ids.py): the referral's day in the first two bytes,
        # random after, version 8.
        await conn.execute(
            """CREATE FUNCTION pg_temp.delivery_id(referral uuid) RETURNS uuid VOLATILE LANGUAGE sql AS $$
                   SELECT encode(set_byte(b, 6, (get_byte(b, 6) & 15) | 128), 'hex')::uuid
                   FROM (SELECT substring(uuid_send(referral) FROM 1 FOR 2)
                                || substring(uuid_send(gen_random_uuid()) FROM 3) AS b) AS x
               $$"""
        )
        for first in range(0, rows, CHUNK):
            records = _records(keys_dir, first, min(CHUNK, rows - first), rows, rng)
            await conn.copy_records_to_table("referrals", records=records, columns=_COLUMNS)
        await conn.execute(
            """INSERT INTO deliveries (id, referral_id, clinic_id, status, envelope, envelope_sha256, recipient_keys,
                                       attempts, created_at, dispatched_at, acknowledged_at, updated_at)
               SELECT pg_temp.delivery_id(r.id), r.id, c.id, s.status,
                      CASE WHEN s.status = 'acknowledged' THEN NULL ELSE decode(repeat('ab', 200), 'hex') END,
                      sha256(r.id::text::bytea), ARRAY['bench-key'], 1, r.created_at, r.retention_anchor,
                      CASE WHEN s.status = 'acknowledged' THEN r.retention_anchor + interval '1 day' END,
                      coalesce(r.retention_anchor, r.created_at)
               FROM referrals r CROSS JOIN clinics c
               CROSS JOIN LATERAL (SELECT CASE WHEN r.retention_anchor IS NULL THEN 'queued'
                                               WHEN hashtext(r.reference) & 15 = 0 THEN 'available'
                                               ELSE 'acknowledged' END AS status) s"""
        )
        await conn.execute(
            """INSERT INTO dispatch_receipts (delivery_id, clinic_id, envelope_sha256, dispatched_at, signer, signature)
               SELECT id, clinic_id, envelope_sha256, dispatched_at, 'bench', decode(repeat('cd', 64), 'hex')
               FROM deliveries WHERE dispatched_at IS NOT NULL"""
        )
        await conn.execute(
            """INSERT INTO outbox (job, subject_id, due_at, created_at, attempts, done_at, outcome)
               SELECT 'dispatch_referral', id, created_at, created_at, 1, coalesce(retention_anchor, created_at),
                      'dispatched'
               FROM referrals"""
        )
        await conn.execute("SET maintenance_work_mem = '1GB'")
        for index in indexes:
            await conn.execute(index["indexdef"])
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return time.perf_counter() - t0


def _month(k: int) -> datetime:
    """Midnight in Oslo on the first of the k-th month after the history's first month."""
    year, month = divmod(START.month - 1 + k, 12)
    return datetime(START.year + year, month + 1, 1, tzinfo=OSLO)


def sweep_once(stack: Stack, database_url: str, now: datetime) -> tuple[int, float]:
    env = stack.env_with(DATABASE_URL=database_url)
    t0 = time.perf_counter()
    done = subprocess.run(
        [str(BIN / "referral-broker"), "retention", "run", "--now", now.isoformat()],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        check=True,
    )
    elapsed = time.perf_counter() - t0
    found = re.search(r"anonymised (\d+) referral", done.stdout)
    if found is None:
        raise RuntimeError(f"unexpected output of retention run: {done.stdout}{done.stderr}")
    return int(found.group(1)), elapsed


async def _rows_touched(database_url: str) -> int:
    """Rows the sweeps have rewritten or deleted so far: anonymised referrals and deliveries, and deleted
    receipts (counted outside the timed runs; each count reads the whole table)."""
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            """SELECT (SELECT count(*) FROM referrals WHERE anonymised_at IS NOT NULL) AS referrals,
                      (SELECT count(*) FROM deliveries WHERE anonymised_at IS NOT NULL) AS deliveries,
                      (SELECT count(*) FROM deliveries WHERE dispatched_at IS NOT NULL) AS dispatched,
                      (SELECT count(*) FROM dispatch_receipts) AS receipts"""
        )
    finally:
        await conn.close()
    assert row is not None
    # Every dispatched delivery had a receipt: those gone are the ones the sweeps deleted.
    return int(row["referrals"]) + int(row["deliveries"]) + int(row["dispatched"]) - int(row["receipts"])


async def _scrape_ms(database_url: str, times: int = 5) -> float:
    """The median time of the database reads behind one /metrics scrape, on this table."""
    conn = await asyncpg.connect(database_url)
    took = []
    try:
        for _ in range(times):
            t0 = time.perf_counter()
            await monitoring.totals(conn)
            await monitoring.deliveries_by_status(conn)
            await monitoring.failure_counts(conn)
            await monitoring.latency_histogram(conn)
            await monitoring.queue_state(conn, datetime.now(OSLO))
            took.append((time.perf_counter() - t0) * 1000)
    finally:
        await conn.close()
    return statistics.median(took)


# What /metrics read before migration 0010 kept counters: counts and a histogram over whole tables.
RECOUNT_SQL = [
    """SELECT (SELECT count(*) FROM referrals), (SELECT count(*) FROM deliveries WHERE dispatched_at IS NOT NULL),
              (SELECT count(*) FROM deliveries WHERE acknowledged_at IS NOT NULL)""",
    "SELECT status, count(*) FROM deliveries GROUP BY status",
    """WITH latency AS MATERIALIZED (
           SELECT extract(epoch FROM dispatched_at - created_at)::float8 AS seconds
           FROM deliveries WHERE dispatched_at IS NOT NULL)
       SELECT (SELECT count(*) FROM latency), (SELECT coalesce(sum(seconds), 0) FROM latency),
              (SELECT array_agg((SELECT count(*) FROM latency WHERE seconds <= b) ORDER BY b)
               FROM unnest(metric_latency_bounds()) AS b)""",
]


async def _recount_ms(database_url: str) -> float:
    """The same reads as counted before the counters: once, it grows with the table."""
    conn = await asyncpg.connect(database_url)
    try:
        t0 = time.perf_counter()
        for sql in RECOUNT_SQL:
            await conn.fetch(sql)
        return (time.perf_counter() - t0) * 1000
    finally:
        await conn.close()


def measure(stack: Stack, rows: int, runs: int, loadavg: object) -> dict:
    """Generate a table of `rows`, then `runs` monthly sweeps; the rate of each, fixed cost taken off."""
    name = f"rb_bench_sweep_{rows}"
    url = asyncio.run(stack.create_database(name, migrate=True))
    try:
        generated = asyncio.run(generate(url, stack.keys_dir, rows))
        scrape_ms, recount_ms = asyncio.run(_scrape_ms(url)), asyncio.run(_recount_ms(url))
        retention_months = 5
        _, fixed = sweep_once(stack, url, _month(retention_months) - timedelta(days=1))
        results = []
        for k in range(1, runs + 1):
            load = loadavg()  # type: ignore[operator]
            before = asyncio.run(_rows_touched(url))
            n, elapsed = sweep_once(stack, url, _month(retention_months + k))
            touched = asyncio.run(_rows_touched(url)) - before
            work = max(elapsed - fixed, 1e-6)
            results.append(
                {
                    "anonymised": n,
                    "seconds": elapsed,
                    "rows_per_s": n / work,
                    "us_per_row": work / n * 1e6 if n else 0,
                    "rows_touched": touched,
                    "touched_per_s": touched / work,
                    "loadavg": load,
                }
            )
        return {
            "rows": rows,
            "generate_s": generated,
            "fixed_s": fixed,
            "scrape_ms": scrape_ms,
            "recount_ms": recount_ms,
            "runs": results,
        }
    finally:
        asyncio.run(stack.drop_database(name))
