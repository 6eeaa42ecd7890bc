"""A small run of the benchmark's own parts (`make bench`, docs/performance.md), so the harness keeps working.

Nothing here is timed against a target: each part runs for a moment on the suite's private servers and
must come back with well-formed figures.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import msgspec
from bench import ab_pull, ceiling, openloop, scenarios, sweep
from bench.bodies import bodies
from bench.run import BEGIN, END, render, write_report

from referral_broker.services import retention
from referral_broker.services.context import BrokerContext
from referral_broker.store import clinics as clinic_store
from referral_broker.store import monitoring
from referral_clinic.envelope_check import ClinicKeys
from referral_protocol.enrolment import InboxItem
from referral_protocol.referral import ReferralRequest, check_request
from tests.conftest import enrol_clinic


def test_the_bench_requests_are_referrals_the_broker_accepts() -> None:
    from datetime import date

    for body in bodies(["a", "b"], n=40):
        checked = check_request(
            msgspec.json.decode(body, type=ReferralRequest), today=date(2026, 11, 22), minimum_age=16
        )
        assert checked.clinics == ["a", "b"]


async def _tiny_server(statuses: list[int]) -> asyncio.Server:
    """Answers each request in turn with the next status, keeping the connection alive."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(
                    next(x for x in head.split(b"\r\n") if x.lower().startswith(b"content-length")).split(b":")[1]
                )
                await reader.readexactly(length)
                body = json.dumps({"reference": f"R{len(statuses)}"}).encode()
                status = statuses.pop() if statuses else 201
                writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_the_open_loop_generator_counts_and_times_what_it_sends() -> None:
    server = await _tiny_server([422])
    port = server.sockets[0].getsockname()[1]
    async with server:
        results = await openloop.run(
            "127.0.0.1", port, bodies(["a"], n=3), rate=100, duration=0.3, connections=4, record_references=True
        )
    summary = results.summary()
    assert summary["scheduled"] == 30
    assert summary["statuses"] == {"201": 29, "422": 1}
    assert summary["accepted"] == len(summary["accepted_at"]) == 29  # type: ignore[arg-type]
    assert 0 < summary["p50_ms"] <= summary["p99_ms"] <= summary["max_ms"]  # type: ignore[operator]
    assert summary["accepted_per_s"] > 0  # type: ignore[operator]


async def test_the_ceilings_measure_the_work_of_a_real_referral(broker: BrokerContext, keys_dir: Path) -> None:
    a = await enrol_clinic(broker, "bench-a")
    await enrol_clinic(broker, "bench-b")
    result = await ceiling.intake_ceiling(
        broker.settings.database_url, keys_dir, ["bench-a", "bench-b"], bodies(["bench-a", "bench-b"], n=5),
        seconds=0.2, concurrency=2,
    )  # fmt: skip
    assert result["referrals_per_s"] > 0 and result["alone_per_s"] > 0
    assert result["crypto_ms"] > 0 and result["transaction_ms"] > 0
    rows = await broker.pool.fetch(
        "SELECT id, envelope FROM deliveries d WHERE clinic_id = (SELECT id FROM clinics WHERE slug = 'bench-a')"
    )
    assert rows and await broker.pool.fetchval("SELECT count(*) FROM outbox WHERE done_at IS NULL") == 0
    keys = ClinicKeys(
        slug="bench-a",
        broker_key=broker.keys.signer.public_key,
        private_keys=list(a.secrets.encryption_secrets),
    )
    opened = ceiling.pull_ceiling([InboxItem(delivery_id=str(r["id"]), envelope=r["envelope"]) for r in rows], keys)
    assert opened["n"] == len(rows) and opened["referrals_per_s"] > 0


async def test_the_generated_history_is_swept_like_real_referrals(broker: BrokerContext, keys_dir: Path) -> None:
    await sweep.generate(broker.settings.database_url, keys_dir, 240, rebuild_indexes=False)  # a shared database
    run = await retention.anonymise_expired(broker, now=sweep._month(6))  # the history's first month is due
    assert 10 <= run.anonymised <= 30
    conn = await asyncpg.connect(broker.settings.database_url)
    try:
        # every contact copy decrypted: the category was kept for statistics
        assert (
            await conn.fetchval("SELECT count(*) FROM referrals WHERE anonymised_at IS NOT NULL AND category IS NULL")
            == 0
        )
        stripped = """SELECT count(*) FROM deliveries d JOIN referrals r ON r.id = d.referral_id
                      WHERE r.anonymised_at IS NOT NULL AND d.envelope IS NOT NULL"""
        assert await conn.fetchval(stripped) == 0
    finally:
        await conn.close()
    # each anonymised referral: itself, its two deliveries, and the receipts of those that were dispatched
    touched = await sweep._rows_touched(broker.settings.database_url)
    assert 3 * run.anonymised <= touched <= 5 * run.anonymised
    # the generated history is counted for /metrics as intake and dispatch would have counted it
    totals = await monitoring.totals(broker.pool)
    assert totals.submissions == 240 and 0 < totals.dispatches <= 480
    assert await sweep._scrape_ms(broker.settings.database_url, times=1) > 0
    assert await sweep._recount_ms(broker.settings.database_url) > 0
    assert await clinic_store.sealing_targets(broker.pool, ["sweep-a"])


def test_the_file_system_floor_makes_files_as_the_clinic_tool_does(tmp_path: Path) -> None:
    assert scenarios.file_system_floor(tmp_path / "floor", n=20) > 0
    made = sorted((tmp_path / "floor").iterdir())
    assert [f.name for f in made] == [f"RB-{i:05d}.json" for i in range(20)]  # named, and no temp file left
    assert {f.stat().st_mode & 0o777 for f in made} == {0o600}
    made = sorted(p.name for p in (tmp_path / "floor").iterdir())
    assert len(made) == 20 and made[0] == "RB-00000.json"  # renamed into place, no temp file left


def test_the_cpu_meter_counts_a_child_that_ran_and_exited_meanwhile() -> None:
    import subprocess
    import sys

    from bench import cpu

    meter = cpu.Meter({}, "child").start()
    subprocess.run([sys.executable, "-c", "sum(i * i for i in range(3_000_000))"], check=True)
    usage = meter.stop()
    assert usage.seconds["child"] > 0.05  # a busy loop of a tenth of a second or more, here
    assert usage.wall >= usage.seconds["child"] * 0.5
    assert usage.per(10)["child"] == usage.seconds["child"] / 10 * 1e6


def test_the_report_has_every_figure_and_keeps_the_text_around_it(tmp_path: Path) -> None:
    fixed = {"offered_rate": 200, "accepted_per_s": 199.0, "p50_ms": 4.0, "p99_ms": 20.0, "loadavg": "0.5 0.4 0.3"}
    sat = {
        "connections": 32,
        "accepted_per_s": 800.0,
        "p50_ms": 30.0,
        "p99_ms": 90.0,
        "dispatch_drain_per_s": 500.0,
        "loadavg": "1 1 1",
    }
    results = {
        "plan": {"api_workers": 2, "durable": True, "repeats": 1, "seconds": 1, "soak_seconds": 60, "soak_rate": 100},
        "started": "2026-11-22T00:00:00+00:00",
        "finished": "2026-11-22T00:30:00+00:00",
        "intake": {
            "fixed": {"200": [fixed]},
            "saturation": [sat],
            "saturation_alone": [sat],
            "ceiling": [
                {
                    "referrals_per_s": 1000.0,
                    "processes": 2,
                    "alone_per_s": 200.0,
                    "crypto_ms": 0.5,
                    "transaction_ms": 4.0,
                    "loadavg": "1 1 1",
                }
            ],
        },
        "inbox": [{"rate": 200, "p50_ms": 40.0, "p99_ms": 80.0, "loadavg": "1 1 1"}],
        "pull": [
            {
                "waiting": 100,
                "referrals_per_s": 400.0,
                "ceiling_per_s": 4000.0,
                "file_us": 40.0,
                "cpu_us": {"clinic tool": 700.0, "kernel workers": 300.0, "postgres": 90.0, "other": 0.2},
                "cores_busy": 1.95,
                "loadavg": "1 1 1",
            }
        ],
        "sweep": [
            {
                "rows": n,
                "scrape_ms": 1.5,
                "recount_ms": 4000.0,
                "runs": [
                    {
                        "anonymised": n // 12,
                        "rows_per_s": 30000.0,
                        "us_per_row": 33.0,
                        "touched_per_s": 147000.0,
                        "loadavg": "1 1 1",
                    }
                ],
            }
            for n in (1000, 4000)
        ],
        "memory": {"api_peak_mb": 90.0, "worker_peak_mb": 60.0},
        "watch": {
            "to_disk": {
                "1": [{"p50_ms": 120.0, "p99_ms": 300.0, "missing": 0, "loadavg": "1 1 1"}],
                "20": [{"p50_ms": 200.0, "p99_ms": 1500.0, "missing": 0, "loadavg": "1 1 1"}],
            },
            "idle": {"seconds": 60, "requests": 3, "per_minute": 3.0, "loadavg": "1 1 1"},
        },
        "soak": {
            "loadavg": "1 1 1",
            "api": {"first_mb": 90, "last_mb": 90, "peak_mb": 91},
            "worker": {"first_mb": 60, "last_mb": 61, "peak_mb": 61},
        },
    }
    table = render(results)
    assert table.startswith(BEGIN) and table.endswith(END)
    assert "| Intake at saturation (worker paused) / ceiling | 80 % |" in table
    assert "| Clinic pull vs its ceiling | ≥ 50 % | 10.0 % (400 of 4000/s) | **not met** |" in table
    assert "| Submit to inbox p99 at 200/s | < 1 s | 80 ms | met |" in table
    assert "| Submit to clinic's disk p99 at 1/s (watch) | < 1 s, none missing | 300 ms, 0 missing | met |" in table
    assert (
        "| Submit to clinic's disk p99 at 20/s (watch) | < 1 s, none missing | 1500 ms, 0 missing | **not met** |"
        in table
    )
    assert "| Idle watching clinic | ≤ 3 requests/min | 3.0 /min | met |" in table
    assert "making one such file here, as the tool does (no fsync) | 40 µs |" in table
    assert "| … CPU per referral during the pull: clinic tool | 700 µs |" in table
    assert table.index("pull: clinic tool") < table.index("pull: kernel workers") < table.index("pull: postgres")
    assert "pull: other" not in table  # under a microsecond a referral: left out
    assert "| … cores busy during the pull | 1.95 cores |" in table
    assert "rows rewritten or deleted (referral, its deliveries, their receipts) | 147000 rows/s |" in table
    assert "/metrics scrape's database reads on this table | 1.5 ms |" in table
    assert "the same read by counting the tables (before 0010) | 4000 ms |" in table
    for line in table.splitlines()[2:-1]:
        assert not line or line.count("|") == 5, line
    report = tmp_path / "performance.md"
    report.write_text(f"# Performance\n\nbefore\n\n{BEGIN}\nold\n{END}\n\nafter\n")
    write_report(report, results)
    text = report.read_text()
    assert text.startswith("# Performance\n\nbefore\n\n" + BEGIN) and text.endswith(END + "\n\nafter\n")
    assert "old" not in text


async def test_the_pull_ab_makes_the_same_envelopes_available_again(broker: BrokerContext, keys_dir: Path) -> None:
    await enrol_clinic(broker, "bench-a")
    await enrol_clinic(broker, "bench-b")
    await ceiling.intake_ceiling(
        broker.settings.database_url, keys_dir, ["bench-a", "bench-b"], bodies(["bench-a", "bench-b"], n=5),
        seconds=0.2, concurrency=2,
    )  # fmt: skip
    await broker.pool.execute("UPDATE deliveries SET status = 'available', dispatched_at = now()")
    waiting = await scenarios.waiting_items(broker.settings.database_url, "bench-a")
    assert waiting and all(item.envelope for item in waiting)
    await broker.pool.execute(  # as the pull leaves them
        "UPDATE deliveries SET status = 'acknowledged', envelope = NULL, acknowledged_at = now()"
    )
    assert await scenarios.waiting_items(broker.settings.database_url, "bench-a") == []
    await ab_pull._make_available_again(broker.settings.database_url, waiting)
    again = await scenarios.waiting_items(broker.settings.database_url, "bench-a")
    assert sorted(again, key=lambda i: i.delivery_id) == sorted(waiting, key=lambda i: i.delivery_id)
