"""Each measurement of the bench, against a running `Stack`. Every function returns plain numbers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis
from arq.constants import default_queue_name

from bench import ceiling, cpu
from bench.stack import BIN, PASSPHRASE, Stack
from referral_broker.crypto.broker_keys import load_keys
from referral_broker.services.ports import JOB_DISPATCH
from referral_broker.store import clinics as clinic_store
from referral_broker.store import referrals as referral_store
from referral_clinic import durable
from referral_protocol.enrolment import InboxItem

ROOT = Path(__file__).resolve().parent.parent


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def open_loop(stack: Stack, bodies_file: Path, rate: float, duration: float, *, references: bool = False) -> dict:
    """Fixed offered load from the open-loop generator, in its own process."""
    args = [
        sys.executable,
        "-m",
        "bench.openloop",
        "--port",
        str(stack.port),
        "--bodies",
        str(bodies_file),
        "--rate",
        str(rate),
        "--duration",
        str(duration),
    ]
    if references:
        args.append("--references")
    settle(stack)
    load = loadavg()
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=duration + 120, check=True)
    result: dict = json.loads(out.stdout)
    result["loadavg"] = load
    return result


def settle(stack: Stack) -> None:
    """Start each run from the same state: the worker has dispatched what the last run left behind,
    and arq's queue is empty (it may hold jobs the reconciler rang for rows already done)."""
    asyncio.run(wait_dispatched(stack.database_url, timeout=600))
    asyncio.run(wait_queue_empty(stack.redis_url, timeout=600))


async def wait_queue_empty(redis_url: str, timeout: float) -> None:
    client = aioredis.from_url(redis_url)
    try:
        deadline = time.monotonic() + timeout
        while await client.zcard(default_queue_name):
            if time.monotonic() > deadline:
                raise TimeoutError("the worker did not empty its queue in time")
            await asyncio.sleep(0.2)
    finally:
        await client.aclose()


def saturation(stack: Stack, bodies_file: Path, duration: float, connections: int, *, pause: int | None = None) -> dict:
    """Closed-loop saturation with wrk: as many requests as `connections` keep-alive clients get through.

    With `pause` (the worker's pid), the worker is stopped (SIGSTOP) for the run, so intake has the
    machine to itself as the ceiling does; afterwards it is continued and the rate at which it works
    off the backlog is measured too.
    """
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk")
    settle(stack)
    load = loadavg()
    if pause is not None:
        os.kill(pause, signal.SIGSTOP)
    try:
        out = _wrk(wrk, stack, bodies_file, duration, connections)
    finally:
        if pause is not None:
            os.kill(pause, signal.SIGCONT)
    drain = asyncio.run(drain_rate(stack.database_url)) if pause is not None else None
    line = next(x for x in out.stdout.splitlines() if x.startswith("BENCH-JSON "))
    raw = json.loads(line.removeprefix("BENCH-JSON "))
    failed = raw["non2xx"] + raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    seconds = raw["duration_us"] / 1e6
    return {
        "connections": connections,
        "requests": raw["requests"],
        "failed": failed,
        "accepted_per_s": (raw["requests"] - failed) / seconds,
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "dispatch_drain_per_s": drain,
        "loadavg": load,
    }


def _wrk(
    wrk: str, stack: Stack, bodies_file: Path, duration: float, connections: int
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            "10s",
            "-s",
            str(ROOT / "bench" / "intake.lua"),
            f"{stack.url}/api/v1/referrals",
        ],
        env={"BENCH_BODIES": str(bodies_file), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
    )


async def drain_rate(database_url: str) -> float:
    """Referrals per second the worker makes available while a backlog waits (as after saturation)."""
    conn = await asyncpg.connect(database_url)
    try:
        query = "SELECT count(*) FROM outbox WHERE done_at IS NULL AND job = $1"
        first = await conn.fetchval(query, JOB_DISPATCH)
        t0 = time.perf_counter()
        left = first
        while left > first // 10 and time.perf_counter() - t0 < 300:
            await asyncio.sleep(0.2)
            left = await conn.fetchval(query, JOB_DISPATCH)
        return float(first - left) / (time.perf_counter() - t0) if first else 0.0
    finally:
        await conn.close()


async def wait_dispatched(database_url: str, timeout: float = 120) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + timeout
        while await conn.fetchval("SELECT count(*) FROM outbox WHERE done_at IS NULL AND job = $1", JOB_DISPATCH):
            if time.monotonic() > deadline:
                raise TimeoutError("the worker did not dispatch everything in time")
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def submit_to_inbox_latencies(database_url: str, accepted: list[tuple[str, float]]) -> list[float]:
    """Seconds from each 201 to the commit that made the referral available (track_commit_timestamp)."""
    await wait_dispatched(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            """SELECT r.reference, max(extract(epoch FROM pg_xact_commit_timestamp(d.xmin))) AS available
               FROM referrals r JOIN deliveries d ON d.referral_id = r.id
               WHERE r.reference = ANY($1::text[]) AND d.status = 'available'
               GROUP BY r.reference""",
            [ref for ref, _ in accepted],
        )
    finally:
        await conn.close()
    available = {r["reference"]: float(r["available"]) for r in rows}
    # Dispatch can commit before the client has read the 201 to its end; that counts as no wait at all.
    return sorted(max(0.0, available[ref] - at) for ref, at in accepted if ref in available)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def submit_to_inbox(stack: Stack, bodies_file: Path, rate: float, duration: float) -> dict:
    result = open_loop(stack, bodies_file, rate, duration, references=True)
    waits = asyncio.run(submit_to_inbox_latencies(stack.database_url, result.pop("accepted_at")))
    return {
        "rate": rate,
        "referrals": len(waits),
        "p50_ms": percentile(waits, 50) * 1000,
        "p99_ms": percentile(waits, 99) * 1000,
        "intake_p99_ms": result["p99_ms"],
        "loadavg": result["loadavg"],
    }


def intake_ceiling(stack: Stack, bodies_file: Path, seconds: float, processes: int, *, pause: int) -> dict:
    """The ceiling's processes run at once, as many as the api has; their rates add up.

    The worker (`pause`, its pid) is stopped meanwhile: the ceiling is the work measured alone, and
    its outbox rows (marked done at the end) are not for dispatching.
    """
    settle(stack)
    load = loadavg()
    os.kill(pause, signal.SIGSTOP)
    try:
        return _ceiling(stack, bodies_file, seconds, processes) | {"loadavg": load}
    finally:
        os.kill(pause, signal.SIGCONT)


def _ceiling(stack: Stack, bodies_file: Path, seconds: float, processes: int) -> dict:
    args = [
        sys.executable,
        "-m",
        "bench.ceiling",
        "--database-url",
        stack.database_url,
        "--keys-dir",
        str(stack.keys_dir),
        "--bodies",
        str(bodies_file),
        "--seconds",
        str(seconds),
    ]
    running = [subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    outs = [json.loads(p.communicate(timeout=seconds + 120)[0]) for p in running]
    return {
        "referrals_per_s": sum(o["referrals_per_s"] for o in outs),
        "processes": processes,
        "alone_per_s": statistics.median(o["alone_per_s"] for o in outs),
        "crypto_ms": statistics.median(o["crypto_ms"] for o in outs),
        "transaction_ms": statistics.median(o["transaction_ms"] for o in outs),
    }


# --------------------------------------------------------------------------------------------- pull


async def seed_waiting(stack: Stack, slug: str, bodies: list[bytes], n: int, concurrency: int = 4) -> None:
    """`n` referrals for one clinic, made as intake makes them, then made available in one UPDATE."""
    keys = load_keys(stack.keys_dir)
    pool = await asyncpg.create_pool(stack.database_url, min_size=concurrency, max_size=concurrency)
    try:
        targets = await clinic_store.sealing_targets(pool, [slug])
        # What earlier runs left in this clinic's inbox is taken as pulled, so exactly `n` wait.
        await pool.execute(
            """UPDATE deliveries SET status = 'acknowledged', envelope = NULL, acknowledged_at = now()
               WHERE clinic_id = $1 AND status = 'available'""",
            targets[0].id,
        )
        ids: list[uuid.UUID] = []

        async def worker(start: int) -> None:
            for i in range(start, n, concurrency):
                new = ceiling.new_referral(keys, targets, bodies[i % len(bodies)], datetime.now(UTC))
                await referral_store.insert_referral(pool, new, dispatch_job=JOB_DISPATCH)
                ids.append(new.id)

        await asyncio.gather(*(worker(s) for s in range(concurrency)))
        # The running worker may meanwhile dispatch some of them itself (the reconciler rings due rows,
        # a dispatch run takes waiting ones along), locking their rows in its own order: first take the
        # rest from the outbox, then make what is still queued available; either may be chosen as a
        # deadlock's victim, and is then tried again.
        for sql in (
            """UPDATE outbox SET done_at = now(), outcome = 'bench-seed'
               WHERE subject_id = ANY($1::uuid[]) AND done_at IS NULL""",
            """UPDATE deliveries SET status = 'available', dispatched_at = now(), updated_at = now()
               WHERE referral_id = ANY($1::uuid[]) AND status = 'queued'""",
        ):
            for attempt in range(5):
                try:
                    await pool.execute(sql, ids)
                    break
                except asyncpg.DeadlockDetectedError:
                    if attempt == 4:
                        raise
    finally:
        await pool.close()


async def waiting_items(database_url: str, slug: str) -> list[InboxItem]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            """SELECT d.id, d.envelope FROM deliveries d JOIN clinics c ON c.id = d.clinic_id
               WHERE c.slug = $1 AND d.status = 'available'""",
            slug,
        )
    finally:
        await conn.close()
    return [InboxItem(delivery_id=str(r["id"]), envelope=r["envelope"]) for r in rows]


def pull(stack: Stack, bodies: list[bytes], n: int, out: Path) -> dict:
    slug = "bench-a"
    asyncio.run(seed_waiting(stack, slug, bodies, n))
    settle(stack)  # the reconciler may have rung some of the seeded rows meanwhile
    items = asyncio.run(waiting_items(stack.database_url, slug))
    keys = ceiling.clinic_keys(stack.clinic_dir(slug), PASSPHRASE)
    ceil = ceiling.pull_ceiling(items, keys)
    shutil.rmtree(out, ignore_errors=True)
    files = file_system_floor(out.parent / f"{out.name}-floor")
    load = loadavg()
    acknowledged, elapsed, usage = timed_pull(stack, slug, out, stack.env, expected=len(items))
    return {
        "waiting": len(items),
        "acknowledged": acknowledged,
        "seconds": elapsed,
        "referrals_per_s": acknowledged / elapsed,
        "ceiling_per_s": ceil["referrals_per_s"],
        "file_us": files,
        "cpu_us": usage.per(acknowledged),  # CPU per referral on the whole machine, by who took it
        "cores_busy": sum(usage.seconds.values()) / usage.wall,
        "loadavg": load,
    }


def timed_pull(
    stack: Stack, slug: str, out: Path, env: dict[str, str], *, expected: int
) -> tuple[int, float, cpu.Usage]:
    """The real `referral-clinic pull --limit 500` of `slug`'s inbox into `out`, which must acknowledge at
    least `expected` referrals: how many it acknowledged, the seconds it took, and the CPU taken on the
    whole machine meanwhile, by who took it."""
    meter = cpu.Meter({p.name: p.pid for p in stack.programs if p.running()}, "clinic tool").start()
    started = time.perf_counter()
    done = subprocess.run(
        [BIN / "referral-clinic", "pull", "--dir", stack.clinic_dir(slug), "--out", out, "--limit", "500"],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        check=True,
    )
    elapsed = time.perf_counter() - started
    usage = meter.stop()
    found = re.search(r"pulled (\d+), written (\d+), acknowledged (\d+)", done.stdout)
    acknowledged = int(found.group(3)) if found else 0
    if acknowledged < expected:
        raise RuntimeError(f"the pull did not take everything: {done.stdout}{done.stderr}")
    return acknowledged, elapsed, usage


def file_system_floor(folder: Path, n: int = 2000) -> float:
    """Microseconds to make one referral-sized file here the way the clinic tool names them (a temp file in the
    folder, linked to its name, the temp name removed: `durable`), with no fsync: what the file system alone
    costs a referral, beside the pull's ceiling.
    The files are left in place (deleting them would make the next files dearer on some file systems)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = os.urandom(2600)
    t0 = time.perf_counter()
    for i in range(n):
        fd, name = tempfile.mkstemp(dir=folder, prefix=durable.TEMP_PREFIX, suffix=durable.TEMP_SUFFIX)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        temp = Path(name)
        durable.give_name(temp, folder / f"RB-{i:05d}.json", replace=False)
        temp.unlink()
    return (time.perf_counter() - t0) / n * 1e6
