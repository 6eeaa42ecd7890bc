"""Fixtures shared by the suite: real PostgreSQL and Redis, private to this run.

By default the run starts its own servers on free ports in a temporary folder, so it neither needs
nor disturbs any server already on the machine. `REFERRAL_TEST_DATABASE_URL` / `REFERRAL_TEST_REDIS_URL`
point it at existing servers instead; it then creates a database of its own and uses a Redis db number
named by `REFERRAL_TEST_REDIS_DB` (default 15), which it flushes.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import msgspec
import pytest
import redis.asyncio as aioredis

import devstack
from referral_broker.crypto.broker_keys import init_keys
from referral_broker.services import enrolment
from referral_broker.services.context import BrokerContext
from referral_broker.services.settings import Settings
from referral_broker.store import migrate
from referral_broker.store.migrate import apply_migrations
from referral_protocol.clinic_identity import ClinicSecrets, make_enrollment

os.environ.setdefault("REFERRAL_CLINIC_KDF_PROFILE", "interactive")


@dataclass(frozen=True)
class Servers:
    postgres_url: str  # server-level URL (database "postgres")
    redis_url: str
    postgres: devstack.PostgresServer | None
    redis: devstack.RedisServer | None


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    pg_url = os.environ.get("REFERRAL_TEST_DATABASE_URL")
    redis_url = os.environ.get("REFERRAL_TEST_REDIS_URL")
    folder = Path(tempfile.mkdtemp(prefix="rb-test-"))
    pg = rd = None
    try:
        if not pg_url:
            pg = devstack.start_postgres(folder / "pg", durable=False)
            pg_url = pg.url
        if not redis_url:
            rd = devstack.start_redis(folder / "redis")
            redis_url = rd.url
        else:
            redis_url = redis_url.rsplit("/", 1)[0] + "/" + os.environ.get("REFERRAL_TEST_REDIS_DB", "15")
        yield Servers(pg_url, redis_url, pg, rd)
    finally:
        if rd is not None:
            rd.stop()
        if pg is not None:
            pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _with_database(server_url: str, name: str) -> str:
    base, _, _ = server_url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
async def database_url(servers: Servers) -> AsyncIterator[str]:
    """A database of this run's own, migrated once, dropped at the end."""
    name = f"rb_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(servers.postgres_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(servers.postgres_url, name)
    conn = await asyncpg.connect(url)
    await apply_migrations(conn)
    await conn.close()
    yield url
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@asynccontextmanager
async def migrated_up_to(
    servers: Servers, monkeypatch: pytest.MonkeyPatch, keep: Callable[[str], bool]
) -> AsyncIterator[tuple[str, asyncpg.Connection]]:
    """A database of its own with only the migrations whose file name `keep` accepts, as an installation that has
    not run the rest yet: its URL and a connection (`apply_migrations(conn)` then runs the rest). Dropped after."""
    name = f"rb_partial_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(servers.postgres_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    everything = migrate.migration_files()
    try:
        conn = await asyncpg.connect(_with_database(servers.postgres_url, name))
        try:
            with monkeypatch.context() as m:
                m.setattr(migrate, "migration_files", lambda: [f for f in everything if keep(f[0])])
                await apply_migrations(conn)
            yield _with_database(servers.postgres_url, name), conn
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def clean_db(database_url: str) -> str:
    """Every table emptied (all of them, so a new migration's tables are never forgotten)."""
    conn = await asyncpg.connect(database_url)
    tables = await conn.fetchval(
        """SELECT string_agg(format('%I', tablename), ', ') FROM pg_tables
           WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"""
    )
    await conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    await conn.close()
    return database_url


@pytest.fixture
async def redis_url(servers: Servers) -> AsyncIterator[str]:
    client = aioredis.from_url(servers.redis_url)
    await client.flushdb()
    yield servers.redis_url
    await client.aclose()


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("broker-keys")
    init_keys(folder)
    return folder


@pytest.fixture
def settings(clean_db: str, redis_url: str, keys_dir: Path) -> Settings:
    return Settings.from_env(
        {
            "DATABASE_URL": clean_db,
            "REDIS_URL": redis_url,
            "REFERRAL_BROKER_KEYS_DIR": str(keys_dir),
            "REFERRAL_BROKER_PUBLIC_URL": "https://broker.test",
        }
    )


class RecordingDoorbell:
    """A doorbell that remembers what it was asked to ring, for tests of the services alone."""

    def __init__(self) -> None:
        self.rung: list[tuple[str, uuid.UUID]] = []
        self.withdrawn: list[tuple[str, uuid.UUID]] = []

    async def ring(self, job: str, subject_id: uuid.UUID) -> None:
        self.rung.append((job, subject_id))

    async def withdraw(self, job: str, subject_ids: list[uuid.UUID]) -> None:
        self.withdrawn.extend((job, s) for s in subject_ids)


@pytest.fixture
async def broker(settings: Settings) -> AsyncIterator[BrokerContext]:
    ctx = await BrokerContext.open(settings, RecordingDoorbell(), pool_size=4)
    yield ctx
    await ctx.close()


#: Made up, with a valid mod-11 check digit: what every test clinic is enrolled with unless it says otherwise.
EXAMPLE_ORGANISATION_NUMBER = "987654325"


@dataclass(frozen=True)
class EnrolledClinic:
    slug: str
    name: str
    secrets: ClinicSecrets
    fingerprint: str


async def enrol_clinic(ctx: BrokerContext, slug: str, *, verify: bool = True, **extra: object) -> EnrolledClinic:
    secrets_ = ClinicSecrets.generate(slug)
    name = f"Klinikk {slug}"
    e = make_enrollment(secrets_, name, datetime.now(UTC), organisation_number=EXAMPLE_ORGANISATION_NUMBER)
    _, fingerprint = await enrolment.add_clinic(ctx, msgspec.json.encode(e), actor="test", **extra)  # type: ignore[arg-type]
    if verify:
        await enrolment.verify(ctx, slug, fingerprint, actor="test")
    return EnrolledClinic(slug, name, secrets_, fingerprint)


def referral_json(
    clinics: list[str], *, description: str = "Vondt i kneet etter fotballtrening", **patient: str
) -> dict[str, object]:
    return {
        "clinics": clinics,
        "need": {"category": "physiotherapy", "description": description},
        "patient": {
            "name": patient.get("name", "Kari Nordmann"),
            "email": patient.get("email", "kari@example.no"),
            "phone": patient.get("phone", "412 34 567"),
            "birth_date": patient.get("birth_date", "1990-05-17"),
        },
        "consent": {"version": "2026-11-01", "accepted": True},
    }
