"""The one launcher of the whole product on one machine: PostgreSQL, Redis, migrations, broker keys,
enrolled clinics, the api server and the worker, each program a real process stopped by its own id.

`make dev` (`python -m devstack`), the fault tests and the bench all start the product through `Stack`;
what differs between them is said by its options:

    stack = Stack(folder).up(clinics=[Clinic("a", "Klinikk a")])   # private servers in `folder`
    stack.serve(); stack.worker()
    ...
    stack.down()                                                    # programs, then the servers it started

Given `database_url` / `redis_url`, it uses those servers instead of starting its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Coroutine, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from devstack.ports import free_port
from devstack.postgres import PostgresServer, start_postgres
from devstack.programs import Program, program, run, wait_for_http
from devstack.redis_server import RedisServer, start_redis
from referral_broker.crypto.broker_keys import init_keys
from referral_broker.store.migrate import apply_migrations

#: The clinics' key files of a stack are throwaway: one passphrase opens them all.
PASSPHRASE = "demo passphrase, not for real clinics"  # noqa: S105 - printed for the demo on purpose

_T = TypeVar("_T")


@dataclass(frozen=True)
class Clinic:
    """A clinic the stack makes with the clinic tool, then enrols and verifies as an operator would."""

    slug: str
    name: str
    city: str | None = None
    categories: tuple[str, ...] = ("physiotherapy", "dermatology", "psychology")
    description: str | None = None
    # Made-up numbers with a valid mod-11 check digit (the broker refuses any other).
    organisation_number: str = "987654325"
    her_id: str | None = None


@dataclass
class Stack:
    """The product's servers and programs in `folder` (logs, keys, clinics, private servers' data).

    Options: `durable=False` turns PostgreSQL's fsync off (fast, loses data on a crash);
    `postgres_settings` are set with ALTER SYSTEM before use; `base_env` is the environment the
    programs start from (by default PATH and HOME of this process); `extra_env` is added to it;
    `keys_dir` is where the broker's keys are (by default `folder/keys`); `log_to_terminal` lets the
    programs write to this terminal instead of log files.
    """

    folder: Path
    database_url: str = ""
    redis_url: str = ""
    database_name: str = "referral_broker"
    durable: bool = True
    postgres_settings: Mapping[str, str] = field(default_factory=dict)
    base_env: Mapping[str, str] | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)
    passphrase: str = PASSPHRASE
    host: str = "127.0.0.1"
    port: int = 0
    public_url: str = ""
    keys_dir: Path = Path()
    log_to_terminal: bool = False
    postgres: PostgresServer | None = None
    redis: RedisServer | None = None
    env: dict[str, str] = field(default_factory=dict)
    programs: list[Program] = field(default_factory=list)
    applied_migrations: list[str] = field(default_factory=list)
    written_keys: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder).resolve()
        self.keys_dir = self.keys_dir if self.keys_dir != Path() else self.folder / "keys"
        self.port = self.port or free_port()
        self.public_url = self.public_url or f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def clinic_dir(self, slug: str) -> Path:
        return self.folder / "clinics" / slug

    # ------------------------------------------------------------------ servers, database, keys

    def up(self, *, clinics: Iterable[Clinic] = ()) -> Stack:
        """Servers (started unless given), the database made and migrated, broker keys, clinics enrolled.

        Safe to run again over the same folder: what is there is re-used.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        if not self.database_url:
            self.postgres = start_postgres(self.folder / "postgres", durable=self.durable)
            if self.postgres_settings:
                _wait(_alter_system(self.postgres.url, self.postgres_settings))
                self.postgres.stop()
                self.postgres.start()
            self.database_url = self.postgres.database_url(self.database_name)
        if not self.redis_url:
            self.redis = start_redis(self.folder / "redis")
            self.redis_url = self.redis.url
        self.applied_migrations = _wait(_create_and_migrate(self.database_url))
        self.env = self._program_env()
        self.written_keys = init_keys(self.keys_dir)
        self.enrol(clinics)
        return self

    def _program_env(self) -> dict[str, str]:
        base = (
            self.base_env
            if self.base_env is not None
            else {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root")}
        )
        return {
            **base,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "REFERRAL_BROKER_KEYS_DIR": str(self.keys_dir),
            "REFERRAL_BROKER_PUBLIC_URL": self.public_url,
            "REFERRAL_CLINIC_PASSPHRASE": self.passphrase,
            "REFERRAL_CLINIC_KDF_PROFILE": "interactive",
            # coverage.py's measurement of subprocesses travels in these
            **{k: v for k, v in os.environ.items() if k.startswith("COVERAGE_") or k == "PYTHONPATH"},
            **self.extra_env,
        }

    def env_with(self, **extra: str) -> dict[str, str]:
        """The programs' environment with a few variables more or changed."""
        return {**self.env, **extra}

    async def create_database(self, name: str, *, migrate: bool) -> str:
        """A fresh database `name` beside the stack's own (dropped first if it exists); its URL."""
        admin = await asyncpg.connect(_on_database(self.database_url, "postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        url = _on_database(self.database_url, name)
        if migrate:
            await _create_and_migrate(url)
        return url

    async def drop_database(self, name: str) -> None:
        admin = await asyncpg.connect(_on_database(self.database_url, "postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    def enrol(self, clinics: Iterable[Clinic]) -> None:
        """As an operator would: each clinic makes its keys with the clinic tool, the broker adds and
        verifies them. Clinics already enrolled are left as they are."""
        wanted = list(clinics)
        if not wanted:
            return
        listed = run([program("referral-broker"), "clinic", "list", "--json"], self.env).stdout
        enrolled = {row["slug"] for row in json.loads(listed)}
        for clinic in wanted:
            if clinic.slug not in enrolled:
                self._enrol_one(clinic)

    def _enrol_one(self, clinic: Clinic) -> None:
        folder = self.clinic_dir(clinic.slug)
        if not (folder / "enrollment.json").exists():
            run(
                [
                    program("referral-clinic"), "init", "--dir", str(folder), "--broker", self.public_url,
                    "--broker-key", str(self.keys_dir / "broker.pub"), "--slug", clinic.slug, "--name", clinic.name,
                    "--organisation-number", clinic.organisation_number,
                    *(["--her-id", clinic.her_id] if clinic.her_id else []),
                ],
                self.env,
            )  # fmt: skip
        add = [program("referral-broker"), "clinic", "add", "--enrollment", str(folder / "enrollment.json")]
        add += ["--categories", ",".join(clinic.categories)]
        add += ["--city", clinic.city] if clinic.city else []
        add += ["--description", clinic.description] if clinic.description else []
        added = run(add, self.env).stdout
        found = re.search(r"^fingerprint: (.+)$", added, re.MULTILINE)
        if found is None:
            raise RuntimeError(f"`referral-broker clinic add` printed no fingerprint:\n{added}")
        run([program("referral-broker"), "clinic", "verify", clinic.slug, "--fingerprint", found.group(1)], self.env)

    # ------------------------------------------------------------------------------- programs

    def serve(self, *, workers: int = 1, extra_env: Mapping[str, str] | None = None, timeout: float = 60) -> Program:
        """`referral-broker serve` on the stack's port, once it answers /healthz."""
        args = [program("referral-broker"), "serve", "--host", self.host, "--port", str(self.port)]
        args += ["--workers", str(workers)] if workers != 1 else []
        api = self._start(args, "api", extra_env)
        wait_for_http(f"{self.url}/healthz", api, timeout=timeout)
        return api

    def worker(self, name: str = "worker", *, extra_env: Mapping[str, str] | None = None) -> Program:
        """`referral-broker worker`; `name` names its log file, for a second worker beside the first."""
        return self._start([program("referral-broker"), "worker"], name, extra_env)

    def _start(self, args: list[str], name: str, extra_env: Mapping[str, str] | None) -> Program:
        log = None if self.log_to_terminal else self.folder / f"{name}.log"
        started = Program(args, {**self.env, **(extra_env or {})}, log).start()
        self.programs.append(started)
        return started

    def stop_programs(self) -> None:
        for started in reversed(self.programs):
            started.stop()

    def down(self) -> None:
        """Every program, then the servers this stack started (never servers it was given)."""
        self.stop_programs()
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.stop()

    def logs(self) -> str:
        return "\n".join(p.output() for p in self.programs)


def _wait(work: Coroutine[Any, Any, _T]) -> _T:
    """Run `work` to its end from synchronous code, also when called under a running event loop (an
    async test): then in a thread of its own, with its own loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, work).result()


def _on_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


async def _create_and_migrate(database_url: str) -> list[str]:
    name = database_url.rpartition("/")[2]
    admin = await asyncpg.connect(_on_database(database_url, "postgres"))
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(database_url)
    try:
        return await apply_migrations(conn)
    finally:
        await conn.close()


async def _alter_system(url: str, settings: Mapping[str, str]) -> None:
    conn = await asyncpg.connect(url)
    try:
        for name, value in settings.items():
            await conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    finally:
        await conn.close()
