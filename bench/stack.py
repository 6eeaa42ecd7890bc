"""The product as the bench runs it: private PostgreSQL and Redis, broker keys, two enrolled clinics,
the api server and the worker, each a real process stopped by its own id."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from referral_broker.cli import localservers
from referral_broker.crypto.broker_keys import init_keys
from referral_broker.store.migrate import apply_migrations

BIN = Path(sys.executable).parent
PASSPHRASE = "bench passphrase, not for real clinics"  # noqa: S105 - a throwaway clinic folder
CLINICS = ("bench-a", "bench-b")
PG_SETTINGS = {
    "shared_buffers": os.environ.get("BENCH_PG_SHARED_BUFFERS", "4GB"),
    "max_wal_size": "8GB",
    "effective_cache_size": "12GB",
}


@dataclass
class Process:
    """One running program of the product, its output in a log file."""

    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        with self.log.open("ab") as handle:
            self.popen = subprocess.Popen(self.args, env=self.env, stdout=handle, stderr=subprocess.STDOUT)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def stop(self, timeout: float = 25) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        os.kill(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)


@dataclass
class Stack:
    folder: Path
    durable: bool = True
    postgres: localservers.PostgresServer | None = None
    redis: localservers.RedisServer | None = None
    database_url: str = ""
    redis_url: str = ""
    port: int = 0
    processes: list[Process] = field(default_factory=list)

    @property
    def keys_dir(self) -> Path:
        return self.folder / "keys"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def clinic_dir(self, slug: str) -> Path:
        return self.folder / "clinics" / slug

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "REFERRAL_BROKER_KEYS_DIR": str(self.keys_dir),
            "REFERRAL_BROKER_PUBLIC_URL": self.url,
            # One client address sends every request of the load test; the per-client limit would refuse
            # all but the first few a minute. Turned off for the bench, and said so in the report.
            "REFERRAL_BROKER_SUBMIT_RATE": "0",
            "REFERRAL_CLINIC_PASSPHRASE": PASSPHRASE,
            "REFERRAL_CLINIC_KDF_PROFILE": "interactive",
            **extra,
        }

    def up(self) -> Stack:
        """Servers, database, keys and two verified clinics; the api and worker are started separately."""
        self.folder.mkdir(parents=True, exist_ok=True)
        localservers.ensure_installed()
        self.postgres = localservers.start_postgres(self.folder / "pg", durable=self.durable)
        # Submit-to-inbox is measured to the commit of the dispatch: PostgreSQL records commit times.
        # PostgreSQL's own defaults (128 MB of shared buffers, 1 GB of WAL between checkpoints) suit no
        # server with 24 GB; these are what a production database of this size would be given.
        for name, value in (("track_commit_timestamp", "on"), *PG_SETTINGS.items()):
            asyncio.run(_alter_system(self.postgres.url, name, value))
        self.postgres.stop()
        self.postgres.start()
        self.redis = localservers.start_redis(self.folder / "redis")
        self.database_url = self.postgres.database_url("rb_bench")
        self.redis_url = self.redis.url
        self.port = localservers.free_port()
        asyncio.run(self.create_database("rb_bench", migrate=True))
        init_keys(self.keys_dir)
        for slug in CLINICS:
            self.enrol(slug)
        return self

    async def create_database(self, name: str, *, migrate: bool) -> str:
        assert self.postgres is not None
        admin = await asyncpg.connect(self.postgres.url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        url = self.postgres.database_url(name)
        if migrate:
            conn = await asyncpg.connect(url)
            try:
                await apply_migrations(conn)
            finally:
                await conn.close()
        return url

    async def drop_database(self, name: str) -> None:
        assert self.postgres is not None
        admin = await asyncpg.connect(self.postgres.url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    def enrol(self, slug: str) -> None:
        """As an operator would: the clinic makes its keys, the broker adds and verifies them."""
        folder = self.clinic_dir(slug)
        env = self.env()
        run(
            [
                str(BIN / "referral-clinic"),
                "init",
                "--dir",
                str(folder),
                "--broker",
                self.url,
                "--broker-key",
                str(self.keys_dir / "broker.pub"),
                "--slug",
                slug,
                "--name",
                f"Klinikk {slug}",
            ],
            env,
        )
        added = run(
            [
                str(BIN / "referral-broker"),
                "clinic",
                "add",
                "--enrollment",
                str(folder / "enrollment.json"),
                "--categories",
                "physiotherapy,dermatology,psychology",
            ],
            env,
        )
        found = re.search(r"^fingerprint: (.+)$", added, re.MULTILINE)
        assert found, added
        run([str(BIN / "referral-broker"), "clinic", "verify", slug, "--fingerprint", found.group(1)], env)

    def start_api(self, *, workers: int = 1, extra_env: dict[str, str] | None = None) -> Process:
        args = [str(BIN / "referral-broker"), "serve", "--port", str(self.port), "--workers", str(workers)]
        api = Process("api", args, self.env(**(extra_env or {})), self.folder / "api.log").start()
        self.processes.append(api)
        wait_healthy(f"{self.url}/healthz", api)
        return api

    def start_worker(self, extra_env: dict[str, str] | None = None) -> Process:
        worker = Process(
            "worker",
            [str(BIN / "referral-broker"), "worker"],
            self.env(**(extra_env or {})),
            self.folder / "worker.log",
        ).start()
        self.processes.append(worker)
        return worker

    def stop_programs(self) -> None:
        for p in reversed(self.processes):
            p.stop()
        self.processes.clear()

    def down(self) -> None:
        self.stop_programs()
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.stop()


async def _alter_system(url: str, name: str, value: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    finally:
        await conn.close()


def run(args: list[str], env: dict[str, str], timeout: float = 300) -> str:
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def wait_healthy(url: str, process: Process, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.popen is not None and process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} exited during start:\n{process.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - our own server on loopback
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")
