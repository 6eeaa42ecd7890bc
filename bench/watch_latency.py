"""Submit → decrypted file on the clinic's disk with `referral-clinic watch` running (its default: the
long-polling inbox, decision 0136), and the requests an idle watching clinic makes a minute.

The real programs: the bench's api and worker, and `referral-clinic watch` for one clinic. Each referral's
wait is from the wall clock of its 201 (the open-loop generator's) to the modification time of the
decrypted file the tool wrote (`REFERENCE.json`: written, then fsynced and linked, so a few ms are left
out). The idle rate is counted at the broker: each signed clinic request leaves one nonce
(`clinic_request_nonces`), and only this clinic is signing while it is measured.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from bench.scenarios import loadavg, open_loop, percentile, settle
from bench.stack import BIN, Stack
from devstack.programs import Program

SLUG = "bench-a"


def _watch(stack: Stack, out: Path, log: Path) -> Program:
    command = [str(BIN / "referral-clinic"), "watch", "--dir", str(stack.clinic_dir(SLUG)), "--out", str(out)]
    profile = os.environ.get("BENCH_WATCH_PROFILE")  # a folder: `watch` runs under pyinstrument (pip install it)
    if profile:
        Path(profile).mkdir(parents=True, exist_ok=True)
        report = Path(profile) / f"{out.name}.txt"
        command = [str(BIN / "pyinstrument"), "-o", str(report), "--show-all", *command]
    watcher = Program(command, stack.env, log)
    watcher.start()
    deadline = time.monotonic() + 60
    while "watching" not in watcher.output():
        if time.monotonic() > deadline or not watcher.running():
            watcher.stop()
            raise RuntimeError(f"referral-clinic watch did not start:\n{watcher.output()}")
        time.sleep(0.1)
    return watcher


def _clear_inbox(stack: Stack) -> None:
    """What earlier scenarios left in the clinic's inbox is marked acknowledged (bench data), so the measured
    run starts from an empty inbox instead of measuring a pull of thousands."""
    asyncio.run(_acknowledge_all(stack.database_url))


async def _acknowledge_all(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            """UPDATE deliveries d SET status = 'acknowledged', acknowledged_at = now(), updated_at = now(),
                                       envelope = NULL
               FROM clinics c WHERE c.id = d.clinic_id AND c.slug = $1 AND d.status = 'available'""",
            SLUG,
        )
    finally:
        await conn.close()


def to_disk(stack: Stack, bodies_file: Path, rate: float, duration: float, folder: Path) -> dict:
    """Referrals submitted at `rate`/s for `duration` s while `watch` runs: seconds from 201 to file."""
    out = folder / f"watch-out-{rate:g}-{time.monotonic_ns()}"
    settle(stack)
    _clear_inbox(stack)
    watcher = _watch(stack, out, folder / "watch.log")
    try:
        time.sleep(3)  # its first pull is done and its long poll is held
        result = open_loop(stack, bodies_file, rate, duration, references=True)
        accepted_list = result.pop("accepted_at")
        pending = dict(accepted_list)
        waits: list[float] = []
        deadline = time.monotonic() + 120
        while pending and time.monotonic() < deadline:
            for reference, at in list(pending.items()):
                try:
                    written = (out / f"{reference}.json").stat().st_mtime
                except FileNotFoundError:
                    continue
                waits.append(max(0.0, written - at))
                del pending[reference]
            time.sleep(0.1)
    finally:
        watcher.stop()
    accepted = dict(accepted_list)
    dispatched = asyncio.run(_dispatched_at(stack.database_url, list(accepted)))
    to_dispatch = [max(0.0, dispatched[r] - at) for r, at in accepted.items() if r in dispatched]
    return {
        "rate": rate,
        "referrals": len(waits),
        "missing": len(pending),
        "p50_ms": percentile(waits, 50) * 1000,
        "p99_ms": percentile(waits, 99) * 1000,
        "max_ms": max(waits, default=0.0) * 1000,
        # the part before the clinic's turn: from the 201 to the start of the dispatch that made it available
        "dispatch_p50_ms": percentile(to_dispatch, 50) * 1000,
        "dispatch_p99_ms": percentile(to_dispatch, 99) * 1000,
        "loadavg": result["loadavg"],
    }


async def _dispatched_at(database_url: str, references: list[str]) -> dict[str, float]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            """SELECT r.reference, extract(epoch FROM d.dispatched_at) AS at
               FROM referrals r JOIN deliveries d ON d.referral_id = r.id JOIN clinics c ON c.id = d.clinic_id
               WHERE c.slug = $1 AND r.reference = ANY($2::text[])""",
            SLUG,
            references,
        )
    finally:
        await conn.close()
    return {r["reference"]: float(r["at"]) for r in rows if r["at"] is not None}


def idle_requests_per_minute(stack: Stack, seconds: float, folder: Path) -> dict:
    """Signed requests the broker receives a minute from a watching clinic with nothing to pull."""
    settle(stack)
    _clear_inbox(stack)
    watcher = _watch(stack, folder / "watch-idle-out", folder / "watch-idle.log")
    load = loadavg()
    try:
        time.sleep(3)  # past its first pull
        since = datetime.now(UTC)
        time.sleep(seconds)
        counted = asyncio.run(_signed_requests_since(stack.database_url, since))
    finally:
        watcher.stop()
    return {"seconds": seconds, "requests": counted, "per_minute": counted * 60 / seconds, "loadavg": load}


async def _signed_requests_since(database_url: str, since: datetime) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM clinic_request_nonces WHERE seen_at >= $1", since))
    finally:
        await conn.close()
