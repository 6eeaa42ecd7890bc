"""The whole pipeline through the real programs: `referral-broker serve` and `worker`, `referral-clinic`.

Each test starts the server and worker against this run's private PostgreSQL and Redis, enrols
clinics with the operator CLI from enrolment files made by the clinic tool, submits over HTTP, and
pulls with the clinic tool. The canary strings submitted must then appear only in the clinic's
decrypted files — never in a database dump, a Redis value, or a log line.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis

from devstack import find_postgres_bin, free_port
from tests.conftest import Servers, referral_json
from tests.processes import Program, program, run, wait_for_http, wait_for_value

pytestmark = pytest.mark.e2e

DISPATCH_EVENTS = "SELECT count(*) FROM audit_events WHERE action = 'delivery.dispatched'"

PASSPHRASE = "clinic passphrase for tests"
CANARIES = {
    "name": "Zyxcanary Nordmann",
    "email": "zyx.canary.mail@example.no",
    "phone": "+4741239871",
    "description": "CANARY-NEED-7F3A knee pain after running",
}


@dataclass
class Broker:
    url: str
    env: dict[str, str]
    folder: Path
    server: Program
    worker: Program
    database_url: str
    redis_url: str

    def start_worker(self) -> Program:
        self.worker = Program([program("referral-broker"), "worker"], self.env, self.folder / "worker.log").start()
        return self.worker

    def clinic(self, slug: str, tool: str | None = None, tool_env: dict[str, str] | None = None) -> Path:
        """A clinic made with the clinic tool (this environment's, or `tool` run with `tool_env`), enrolled and
        verified with the operator CLI."""
        folder = self.folder / "clinics" / slug
        tool = tool or program("referral-clinic")
        tool_env = tool_env or self.env
        out = run(
            [
                tool,
                "init",
                "--dir",
                str(folder),
                "--broker",
                self.url,
                "--broker-key",
                str(Path(self.env["REFERRAL_BROKER_KEYS_DIR"]) / "broker.pub"),
                "--slug",
                slug,
                "--name",
                f"Klinikk {slug}",
                "--organisation-number",
                "987654325",
            ],
            tool_env,
        )
        fingerprint = run([tool, "fingerprint", "--dir", str(folder)], tool_env).stdout.strip()
        assert fingerprint in out.stdout
        added = run(
            [program("referral-broker"), "clinic", "add", "--enrollment", str(folder / "enrollment.json")], self.env
        )
        assert fingerprint in added.stdout
        run([program("referral-broker"), "clinic", "verify", slug, "--fingerprint", fingerprint.lower()], self.env)
        return folder

    def pull(self, folder: Path, out: Path) -> tuple[int, str]:
        result = run(
            [program("referral-clinic"), "pull", "--dir", str(folder), "--out", str(out)], self.env, check=False
        )
        with (self.folder / "clinic.log").open("a") as log:
            log.write(result.stdout + result.stderr)
        return result.returncode, result.stdout + result.stderr

    def submit(self, clinics: list[str], **patient: str) -> str:
        body = referral_json(clinics, description=patient.pop("description", "Vondt i ryggen"), **patient)
        response = httpx.post(f"{self.url}/api/v1/referrals", json=body, timeout=10)
        assert response.status_code == 201, response.text
        reference: str = response.json()["reference"]
        return reference


@pytest.fixture
def broker(servers: Servers, clean_db: str, redis_url: str, tmp_path: Path) -> Iterator[Broker]:
    with started_broker(clean_db, redis_url, tmp_path) as b:
        yield b


@contextmanager
def started_broker(
    database_url: str, redis_url: str, folder: Path, extra_env: dict[str, str] | None = None
) -> Iterator[Broker]:
    """Keys made and the server started (the worker when asked); both stopped at the end."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    keys = folder / "keys"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(folder),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REFERRAL_BROKER_KEYS_DIR": str(keys),
        "REFERRAL_BROKER_PUBLIC_URL": url,
        "REFERRAL_BROKER_JOB_TIMEOUT": "3",
        "REFERRAL_BROKER_SUBMIT_RATE": "0",  # every submission here comes from one address
        "REFERRAL_BROKER_SUBMIT_REFUSED_RATE": "0",
        "REFERRAL_CLINIC_PASSPHRASE": PASSPHRASE,
        "REFERRAL_CLINIC_KDF_PROFILE": "interactive",
        # coverage.py's subprocess measurement travels in this variable
        **{k: v for k, v in os.environ.items() if k.startswith("COVERAGE_") or k == "PYTHONPATH"},
        **(extra_env or {}),
    }
    run([program("referral-broker"), "keys", "init"], env)
    server = Program([program("referral-broker"), "serve", "--port", str(port)], env, folder / "server.log")
    b = Broker(url, env, folder, server.start(), None, database_url, redis_url)  # type: ignore[arg-type]
    try:
        wait_for_http(f"{url}/healthz", server)
        yield b
    finally:
        server.stop()
        if b.worker is not None:
            b.worker.stop()


def _redis_values(url: str) -> str:
    """Every key and value in the Redis database, whatever its type, as one searchable text."""
    client = redis.Redis.from_url(url)
    parts: list[str] = []
    for key in client.scan_iter():
        kind = client.type(key).decode()
        value: object
        if kind == "string":
            value = client.get(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "set":
            value = client.smembers(key)
        else:
            value = client.dump(key)
        parts.append(f"{key!r} {value!r}")
    return "\n".join(parts)


def _pg_dump(database_url: str) -> str:
    dump = find_postgres_bin("pg_dump")
    return run([str(dump), "--data-only", "--inserts", database_url], {"PATH": "/usr/bin:/bin"}).stdout


async def test_referral_reaches_only_the_chosen_clinics_and_no_plaintext_stays_behind(broker: Broker) -> None:
    a, b, c = broker.clinic("klinikk-a"), broker.clinic("klinikk-b"), broker.clinic("klinikk-c")
    broker.start_worker()
    only_a = broker.submit(["klinikk-a"], **CANARIES)
    both = broker.submit(["klinikk-a", "klinikk-b"])
    await wait_for_value(broker.database_url, "SELECT count(*) FROM deliveries WHERE status = 'available'", 3)
    # A canary moment: ciphertext is waiting, Redis holds the jobs' traces.
    redis_text = _redis_values(broker.redis_url)

    for folder in (a, b, c):
        code, output = broker.pull(folder, broker.folder / "inbox" / folder.name)
        assert code == 0, output
    files = {p.parent.name: sorted(x.name for x in p.parent.iterdir()) for p in (broker.folder / "inbox").glob("*/*")}
    assert files == {"klinikk-a": sorted([f"{only_a}.json", f"{both}.json"]), "klinikk-b": [f"{both}.json"]}
    assert not list((broker.folder / "inbox" / "klinikk-c").glob("*.json"))

    received = json.loads((broker.folder / "inbox" / "klinikk-a" / f"{only_a}.json").read_text())
    assert received["reference"] == only_a
    assert received["patient"] == {
        "name": CANARIES["name"],
        "email": CANARIES["email"],
        "phone": CANARIES["phone"],
        "birth_date": "1990-05-17",
    }
    assert received["need"] == {"category": "physiotherapy", "description": CANARIES["description"]}
    assert received["consent"]["version"] == "2026-11-01" and received["submitted_at"]

    await wait_for_value(broker.database_url, "SELECT count(*) FROM deliveries WHERE status = 'acknowledged'", 3)
    # Acknowledged: the clinic wrote it durably, and the broker dropped its ciphertext.
    await wait_for_value(broker.database_url, "SELECT count(*) FROM deliveries WHERE envelope IS NOT NULL", 0)

    broker.worker.stop()
    broker.server.stop()
    haystacks = {
        "database dump": _pg_dump(broker.database_url),
        "redis": redis_text + _redis_values(broker.redis_url),
        "server log": broker.server.output(),
        "worker log": broker.worker.output(),
        "clinic tool output": (broker.folder / "clinic.log").read_text(),
    }
    assert "referrals" in haystacks["database dump"]  # the dump is real, not empty
    for where, text in haystacks.items():
        for canary in CANARIES.values():
            assert canary not in text, f"{canary!r} found in the {where}"
            assert canary.lower() not in text.lower(), f"{canary!r} found in the {where}"


async def test_redis_flush_loses_no_referral(broker: Broker) -> None:
    a = broker.clinic("klinikk-a")
    references = [broker.submit(["klinikk-a"]) for _ in range(5)]  # no worker yet: jobs wait in Redis
    assert redis.Redis.from_url(broker.redis_url).flushdb()  # Redis loses everything
    broker.start_worker()  # a starting worker reconciles from the outbox
    await wait_for_value(broker.database_url, "SELECT count(*) FROM deliveries WHERE status = 'available'", 5)
    code, output = broker.pull(a, broker.folder / "inbox")
    assert code == 0, output
    assert sorted(p.stem for p in (broker.folder / "inbox").glob("*.json")) == sorted(references)
    await wait_for_value(broker.database_url, "SELECT count(*) FROM dispatch_receipts", 5)
    await wait_for_value(broker.database_url, DISPATCH_EVENTS, 5)


async def test_worker_killed_mid_job_still_dispatches_exactly_once(broker: Broker) -> None:
    a = broker.clinic("klinikk-a")
    reference = broker.submit(["klinikk-a"])
    conn = await asyncpg.connect(broker.database_url)
    try:
        # Hold the outbox row so the worker's job blocks inside its first statement …
        tx = conn.transaction()
        await tx.start()
        await conn.execute("SELECT * FROM outbox FOR UPDATE")
        worker = broker.start_worker()
        await _wait_until_waiting_on_lock(broker.database_url)
        worker.kill()  # … and kill the worker there.
        await tx.rollback()
    finally:
        await conn.close()
    broker.start_worker()  # arq re-runs the job once its in-progress mark lapses
    await wait_for_value(broker.database_url, "SELECT count(*) FROM deliveries WHERE status = 'available'", 1, 60)
    code, output = broker.pull(a, broker.folder / "inbox")
    assert code == 0, output
    assert [p.stem for p in (broker.folder / "inbox").glob("*.json")] == [reference]
    await wait_for_value(broker.database_url, "SELECT count(*) FROM dispatch_receipts", 1)
    await wait_for_value(broker.database_url, "SELECT max(attempts) FROM deliveries", 1)
    await wait_for_value(broker.database_url, DISPATCH_EVENTS, 1)


async def _wait_until_waiting_on_lock(database_url: str, timeout: float = 30) -> None:
    """Poll from a connection of its own: pg_stat_activity is a snapshot per transaction."""
    deadline = time.monotonic() + timeout
    conn = await asyncpg.connect(database_url)
    try:
        while time.monotonic() < deadline:
            if await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE outbox%'"
            ):
                return
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    raise AssertionError("the worker never reached the dispatch job")
