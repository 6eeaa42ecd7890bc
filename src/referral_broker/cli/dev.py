"""`referral-broker dev`: the whole product on one machine, for trying it out and for development.

It uses DATABASE_URL and REDIS_URL when they are given and answer; otherwise it starts private
PostgreSQL and Redis servers from the system's binaries in `.dev/`. Then: migrations, broker keys,
three demo clinics (key folders in `.dev/clinics/`, enrolled and verified), the web server and the
worker. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from referral_broker.cli import localservers
from referral_broker.cli.command_context import open_command_context
from referral_broker.crypto.broker_keys import init_keys
from referral_broker.services import enrolment
from referral_broker.services.settings import Settings
from referral_broker.store.migrate import apply_migrations

DEV_DIR = Path(".dev")
DEV_DATABASE = "referral_broker"
DEMO_PASSPHRASE = "demo passphrase, not for real clinics"  # noqa: S105 - printed for the demo on purpose


@dataclass(frozen=True)
class DemoClinic:
    slug: str
    name: str
    city: str
    categories: tuple[str, ...]
    description: str


DEMO_CLINICS = (
    DemoClinic(
        "fysio-oslo",
        "Fysioterapi Oslo sentrum",
        "Oslo",
        ("physiotherapy", "orthopaedics"),
        "Fysioterapi og opptrening etter skader, kort ventetid.",
    ),
    DemoClinic(
        "hud-bergen", "Hudklinikken Bergen", "Bergen", ("dermatology",), "Hudlege for føflekkontroll, eksem og akne."
    ),
    DemoClinic(
        "psykolog-trondheim",
        "Psykologsenteret Trondheim",
        "Trondheim",
        ("psychology",),
        "Samtaleterapi for angst, depresjon og søvnvansker.",
    ),
)


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), timeout=1):
            return True
    except OSError:
        return False


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _services(stack: list[localservers.PostgresServer | localservers.RedisServer]) -> tuple[str, str]:
    database_url = os.environ.get("DATABASE_URL")
    redis_url = os.environ.get("REDIS_URL")
    if database_url and _reachable(database_url):
        print(f"• PostgreSQL: using DATABASE_URL ({urlsplit(database_url).hostname})")
    else:
        localservers.ensure_installed()
        pg = localservers.start_postgres((DEV_DIR / "postgres").resolve())
        stack.append(pg)
        database_url = pg.database_url(DEV_DATABASE)
        print(f"• PostgreSQL: private server on port {pg.port}, data in {DEV_DIR / 'postgres'}")
    if redis_url and _reachable(redis_url):
        print(f"• Redis: using REDIS_URL ({urlsplit(redis_url).hostname})")
    else:
        localservers.ensure_installed()
        rd = localservers.start_redis((DEV_DIR / "redis").resolve())
        stack.append(rd)
        redis_url = rd.url
        print(f"• Redis: private server on port {rd.port}")
    return database_url, redis_url


async def _prepare_database(database_url: str) -> None:
    base, _, name = database_url.rpartition("/")
    admin = await asyncpg.connect(f"{base}/postgres")
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(database_url)
    try:
        applied = await apply_migrations(conn)
    finally:
        await conn.close()
    print(f"• migrations: {', '.join(applied) if applied else 'up to date'}")


async def _enrol_demo_clinics(settings: Settings, public_url: str, env: dict[str, str]) -> None:
    ctx = await open_command_context(settings)
    try:
        enrolled = {c.clinic.slug for c in await enrolment.list_clinics(ctx)}
        for demo in DEMO_CLINICS:
            folder = DEV_DIR / "clinics" / demo.slug
            if demo.slug in enrolled:
                continue
            if not (folder / "enrollment.json").exists():
                subprocess.run(  # noqa: S603 - our own tool, fixed arguments
                    [
                        _bin("referral-clinic"),
                        "init",
                        "--dir",
                        str(folder),
                        "--broker",
                        public_url,
                        "--broker-key",
                        str(settings.keys_dir / "broker.pub"),
                        "--slug",
                        demo.slug,
                        "--name",
                        demo.name,
                    ],
                    env=env,
                    check=True,
                    stdout=subprocess.DEVNULL,
                )
            _, fingerprint = await enrolment.add_clinic(
                ctx,
                (folder / "enrollment.json").read_bytes(),
                actor="dev",
                city=demo.city,
                categories=list(demo.categories),
                description=demo.description,
            )
            await enrolment.verify(ctx, demo.slug, fingerprint, actor="dev")
        print(f"• demo clinics: {', '.join(d.slug for d in DEMO_CLINICS)} (keys in {DEV_DIR / 'clinics'})")
    finally:
        await ctx.close()


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the web server stopped during start; see the lines above")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1):  # noqa: S310 - our own local server
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the web server did not answer on {url} within {timeout:.0f} s")


def run_dev(*, host: str, port: int) -> int:
    DEV_DIR.mkdir(exist_ok=True)
    stack: list[localservers.PostgresServer | localservers.RedisServer] = []
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    try:
        database_url, redis_url = _services(stack)
        public_url = os.environ.get("REFERRAL_BROKER_PUBLIC_URL", f"http://{host}:{port}")
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "REFERRAL_BROKER_PUBLIC_URL": public_url,
            "REFERRAL_BROKER_KEYS_DIR": os.environ.get("REFERRAL_BROKER_KEYS_DIR", "keys"),
            "REFERRAL_CLINIC_PASSPHRASE": os.environ.get("REFERRAL_CLINIC_PASSPHRASE", DEMO_PASSPHRASE),
            "REFERRAL_CLINIC_KDF_PROFILE": os.environ.get("REFERRAL_CLINIC_KDF_PROFILE", "interactive"),
            # One-time codes of the rights pages are written here as files (unless SMTP / an SMS gateway is set).
            "REFERRAL_BROKER_DEV_OUTBOX": os.environ.get(
                "REFERRAL_BROKER_DEV_OUTBOX", str((DEV_DIR / "outbox").resolve())
            ),
        }
        settings = Settings.from_env(env)
        asyncio.run(_prepare_database(database_url))
        written = init_keys(settings.keys_dir)
        print(f"• broker keys in {settings.keys_dir}/" + (f" (created {', '.join(written)})" if written else ""))
        asyncio.run(_enrol_demo_clinics(settings, public_url, env))
        print(
            f"• one-time codes for {public_url}/rights: files in {settings.dev_outbox}/"
            + (" (e-mail goes by SMTP)" if settings.smtp_url else "")
            + (" (text messages go to the SMS gateway)" if settings.sms_url else "")
        )

        children.append(
            subprocess.Popen(  # noqa: S603
                [_bin("referral-broker"), "serve", "--host", host, "--port", str(port)], env=env
            )
        )
        children.append(subprocess.Popen([_bin("referral-broker"), "worker"], env=env))  # noqa: S603
        _wait_healthy(f"http://{host}:{port}", children[0])
        _print_welcome(public_url, database_url)
        while not stopping and all(c.poll() is None for c in children):
            time.sleep(0.5)
        if not stopping:
            print("a process stopped unexpectedly; stopping the rest", file=sys.stderr)
            return 1
        return 0
    except KeyboardInterrupt:
        return 0
    except (localservers.ServerUnavailable, RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"referral-broker dev: {exc}", file=sys.stderr)
        return 1
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=25)
            except subprocess.TimeoutExpired:
                child.kill()
        for server in reversed(stack):
            server.stop()
        print("stopped.")


def _print_welcome(public_url: str, database_url: str) -> None:
    clinic = DEMO_CLINICS[0]
    print(
        f"""
referral-broker is running at {public_url}

  Patients:  open {public_url}/ in a browser (find clinics, send a request, receipt, manage link)
             {public_url}/rights finds a patient's requests by e-mail or phone (codes: see "one-time codes")
  API:       {public_url}/schema  (GET /api/v1/clinics, GET /api/v1/consent, POST /api/v1/referrals)
  Operators: {public_url}/ops — first make an account (it prints the TOTP secret for your app):
    DATABASE_URL={database_url} REFERRAL_BROKER_KEYS_DIR=keys \\
      .venv/bin/referral-broker operator create --username you --role operator

  Send a referral as a patient:
    curl -sS -X POST {public_url}/api/v1/referrals -H 'content-type: application/json' -d '{{
      "clinics": ["{clinic.slug}"],
      "need": {{"category": "physiotherapy", "description": "Vondt i kneet etter fotball"}},
      "patient": {{"name": "Kari Nordmann", "email": "kari@example.no", "phone": "412 34 567",
                  "birth_date": "1990-05-17"}},
      "consent": {{"version": "2026-11-01", "accepted": true}}}}'

  Pull it as the clinic (decrypts on this machine):
    REFERRAL_CLINIC_PASSPHRASE='{DEMO_PASSPHRASE}' \\
      .venv/bin/referral-clinic pull --dir {DEV_DIR}/clinics/{clinic.slug} --out {DEV_DIR}/inbox/{clinic.slug}

  As the operator:
    DATABASE_URL={database_url} .venv/bin/referral-broker clinic list

Ctrl-C stops the server, the worker and the private databases.
""",
        flush=True,
    )
