"""Several api processes and workers on one machine: every referral delivered exactly once, replay
protection shared across processes, and SIGTERM losing nothing that was accepted."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from devstack import free_port
from referral_broker.services.context import BrokerContext
from referral_broker.services.settings import Settings
from referral_protocol.encoding import key_id
from referral_protocol.request_signature import sign_request
from tests.conftest import EnrolledClinic, Servers, enrol_clinic, referral_json
from tests.processes import Program, program, wait_for_http, wait_for_value

pytestmark = pytest.mark.e2e


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "REFERRAL_BROKER_KEYS_DIR": str(settings.keys_dir),
        "REFERRAL_BROKER_JOB_TIMEOUT": "5",
        "REFERRAL_BROKER_SUBMIT_RATE": "0",  # a load test from one address
        "REFERRAL_BROKER_SUBMIT_REFUSED_RATE": "0",  # (in-flight submissions hold a place in both counts)
        **{k: v for k, v in os.environ.items() if k.startswith("COVERAGE_") or k == "PYTHONPATH"},
    }


@pytest.fixture
def programs(tmp_path: Path) -> Iterator[list[Program]]:
    started: list[Program] = []
    yield started
    for p in started:
        p.stop()


def _serve(env: dict[str, str], folder: Path, programs: list[Program], workers: int = 1) -> str:
    port = free_port()
    server = Program(
        [program("referral-broker"), "serve", "--port", str(port), "--workers", str(workers)], env, folder / "api.log"
    ).start()
    programs.append(server)
    wait_for_http(f"http://127.0.0.1:{port}/healthz", server)
    return f"http://127.0.0.1:{port}"


def _worker(env: dict[str, str], folder: Path, programs: list[Program], n: int) -> Program:
    worker = Program([program("referral-broker"), "worker"], env, folder / f"worker-{n}.log").start()
    programs.append(worker)
    return worker


async def _submit_many(url: str, clinics: list[str], n: int) -> list[httpx.Response | Exception]:
    limits = httpx.Limits(max_connections=40)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def one() -> httpx.Response | Exception:
            try:
                return await client.post("/api/v1/referrals", json=referral_json(clinics))
            except httpx.HTTPError as exc:
                return exc

        return await asyncio.gather(*(one() for _ in range(n)))


async def test_many_api_processes_and_workers_deliver_every_referral_exactly_once(
    broker: BrokerContext, env: dict[str, str], tmp_path: Path, programs: list[Program]
) -> None:
    await enrol_clinic(broker, "a")
    await enrol_clinic(broker, "b")
    url = _serve(env, tmp_path, programs, workers=3)
    for n in range(2):
        _worker(env, tmp_path, programs, n)
    responses = await _submit_many(url, ["a", "b"], 200)
    assert [r.status_code for r in responses if isinstance(r, httpx.Response)] == [201] * 200
    db = broker.settings.database_url
    conn = await asyncpg.connect(db)
    try:
        await wait_for_value(
            broker.settings.database_url, "SELECT count(*) FROM deliveries WHERE status = 'available'", 400
        )
        await wait_for_value(db, "SELECT count(*) FROM outbox WHERE done_at IS NULL", 0)
        assert await conn.fetchval("SELECT count(*) FROM dispatch_receipts") == 400
        assert await conn.fetchval("SELECT max(attempts) FROM deliveries") == 1
        dispatched = await conn.fetchval("SELECT count(*) FROM audit_events WHERE action = 'delivery.dispatched'")
        assert dispatched == 200
    finally:
        await conn.close()


def _signed_inbox_request(clinic: EnrolledClinic, url: str) -> dict[str, str]:
    return sign_request(
        "GET",
        f"{url}/api/v1/clinic/inbox",
        {},
        None,
        key_id=key_id(clinic.secrets.signing_public),
        seed=clinic.secrets.signing_seed,
    )


async def test_a_replayed_request_is_refused_whichever_process_receives_it(
    broker: BrokerContext, env: dict[str, str], tmp_path: Path, programs: list[Program]
) -> None:
    clinic = await enrol_clinic(broker, "a")
    url = _serve(env, tmp_path, programs, workers=3)
    headers = _signed_inbox_request(clinic, url)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        # separate connections, so the copies spread over the server processes
        results = await asyncio.gather(
            *(client.get("/api/v1/clinic/inbox", headers={**headers, "connection": "close"}) for _ in range(12))
        )
    assert sorted(r.status_code for r in results) == [200] + [401] * 11


async def test_sigterm_to_the_api_finishes_in_flight_requests(
    broker: BrokerContext, env: dict[str, str], tmp_path: Path, programs: list[Program]
) -> None:
    await enrol_clinic(broker, "a")
    url = _serve(env, tmp_path, programs)
    server = programs[0]
    finished_after_signal = 0
    signalled_at: float | None = None

    async def watch_and_signal() -> None:
        nonlocal signalled_at
        conn = await asyncpg.connect(broker.settings.database_url)
        try:
            while not await conn.fetchval("SELECT count(*) FROM referrals"):
                await asyncio.sleep(0.005)
        finally:
            await conn.close()
        server.signal(signal.SIGTERM)
        signalled_at = time.monotonic()

    async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=30)) as client:

        async def one() -> httpx.Response | Exception:
            nonlocal finished_after_signal
            try:
                response = await client.post("/api/v1/referrals", json=referral_json(["a"]))
            except httpx.HTTPError as exc:
                return exc
            if signalled_at is not None:
                finished_after_signal += 1
            return response

        results, _ = await asyncio.gather(asyncio.gather(*(one() for _ in range(150))), watch_and_signal())
    accepted = [r.json()["reference"] for r in results if isinstance(r, httpx.Response) and r.status_code == 201]
    assert all(r.status_code == 201 for r in results if isinstance(r, httpx.Response)), "no 5xx while stopping"
    assert finished_after_signal > 0, "some requests were in flight when SIGTERM arrived"
    # uvicorn finishes in-flight work, runs the shutdown lifespan, then re-raises SIGTERM (exit -15).
    assert server.process is not None and server.process.wait(timeout=30) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in server.output()
    stored = {r["reference"] for r in await broker.pool.fetch("SELECT reference FROM referrals")}
    assert set(accepted) <= stored  # every 201 the patient saw has its referral


async def test_sigterm_to_a_worker_loses_no_job(
    broker: BrokerContext, env: dict[str, str], tmp_path: Path, programs: list[Program]
) -> None:
    await enrol_clinic(broker, "a")
    url = _serve(env, tmp_path, programs)
    responses = await _submit_many(url, ["a"], 120)
    assert all(isinstance(r, httpx.Response) and r.status_code == 201 for r in responses)
    first = _worker(env, tmp_path, programs, 0)
    db = broker.settings.database_url
    conn = await asyncpg.connect(db)
    try:
        await wait_for_value(
            broker.settings.database_url, "SELECT least(count(*), 1) FROM deliveries WHERE status = 'available'", 1
        )
        first.signal(signal.SIGTERM)
        assert first.process is not None and first.process.wait(timeout=40) == 0  # it stops, cleanly
        _worker(env, tmp_path, programs, 1)
        await wait_for_value(
            broker.settings.database_url, "SELECT count(*) FROM deliveries WHERE status = 'available'", 120
        )
        assert await conn.fetchval("SELECT count(*) FROM dispatch_receipts") == 120
        assert await conn.fetchval("SELECT max(attempts) FROM deliveries") == 1
    finally:
        await conn.close()


async def test_two_migrate_processes_at_once_apply_each_migration_once(servers: Servers, env: dict[str, str]) -> None:
    admin = await asyncpg.connect(servers.postgres_url)
    await admin.execute('CREATE DATABASE "rb_migrate_processes"')
    try:
        env = {**env, "DATABASE_URL": servers.postgres_url.rsplit("/", 1)[0] + "/rb_migrate_processes"}
        procs = [
            await asyncio.create_subprocess_exec(
                program("referral-broker"), "migrate", env=env, stdout=asyncio.subprocess.PIPE
            )
            for _ in range(2)
        ]
        outputs = [(await p.communicate())[0].decode() for p in procs]
        assert [p.returncode for p in procs] == [0, 0]
        assert sorted(o.split(":")[0].strip() for o in outputs) == ["applied", "the database is up to date"]
        conn = await asyncpg.connect(env["DATABASE_URL"])
        try:
            names = [r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")]
        finally:
            await conn.close()
        assert len(names) == len(set(names)) > 0
    finally:
        await admin.execute('DROP DATABASE "rb_migrate_processes" WITH (FORCE)')
        await admin.close()


async def test_the_submission_limit_holds_across_api_processes(
    broker: BrokerContext, env: dict[str, str], tmp_path: Path, programs: list[Program]
) -> None:
    await enrol_clinic(broker, "a")
    url = _serve(env | {"REFERRAL_BROKER_SUBMIT_RATE": "5"}, tmp_path, programs, workers=3)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        # A fresh connection for each, so the submissions spread over the three processes.
        results = await asyncio.gather(
            *(
                client.post("/api/v1/referrals", json=referral_json(["a"]), headers={"connection": "close"})
                for _ in range(12)
            )
        )
    assert sorted(r.status_code for r in results) == [201] * 5 + [429] * 7
    assert await broker.pool.fetchval("SELECT count(*) FROM referrals") == 5
