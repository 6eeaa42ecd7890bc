"""`make dev` (`python -m devstack`): the whole product on one machine, for trying it out and for development.

It uses DATABASE_URL and REDIS_URL when they are given and answer; otherwise it starts private
PostgreSQL and Redis servers from the system's binaries in `.dev/`. Then: migrations, broker keys,
three demo clinics (key folders in `.dev/clinics/`, enrolled and verified), the web server and the
worker. Ctrl-C (or SIGTERM) stops everything it started.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from devstack.ports import ServerUnavailable
from devstack.programs import ProgramFailed
from devstack.stack import PASSPHRASE, Clinic, Stack
from referral_broker.services.settings import Settings

DEV_DIR = Path(".dev")

#: Demo clinics; their organisation numbers and HER-id are made up (valid check digits, no real organisation).
DEMO_CLINICS = (
    Clinic(
        "fysio-oslo",
        "Fysioterapi Oslo sentrum",
        "Oslo",
        ("physiotherapy", "orthopaedics"),
        "Fysioterapi og opptrening etter skader, kort ventetid.",
        organisation_number="987654325",
        her_id="8765432",
    ),
    Clinic(
        "hud-bergen",
        "Hudklinikken Bergen",
        "Bergen",
        ("dermatology",),
        "Hudlege for føflekkontroll, eksem og akne.",
        organisation_number="998877660",
    ),
    Clinic(
        "psykolog-trondheim",
        "Psykologsenteret Trondheim",
        "Trondheim",
        ("psychology",),
        "Samtaleterapi for angst, depresjon og søvnvansker.",
        organisation_number="975312461",
    ),
)


def _reachable(url: str | None) -> bool:
    if not url:
        return False
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), timeout=1):
            return True
    except OSError:
        return False


def _given(name: str) -> str:
    """A server URL from the environment, when it answers; else "" (a private server is started)."""
    url = os.environ.get(name)
    if _reachable(url):
        print(f"• {name}: using {urlsplit(url or '').hostname}")
        return url or ""
    return ""


def run_dev(*, host: str, port: int) -> int:
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    stack = Stack(
        DEV_DIR,
        database_url=_given("DATABASE_URL"),
        redis_url=_given("REDIS_URL"),
        host=host,
        port=port,
        public_url=os.environ.get("REFERRAL_BROKER_PUBLIC_URL", ""),
        base_env=dict(os.environ),
        keys_dir=Settings.one_from_env("keys_dir").resolve(),
        passphrase=os.environ.get("REFERRAL_CLINIC_PASSPHRASE", PASSPHRASE),
        # One-time codes of the rights pages are written here as files (unless SMTP / an SMS gateway is set).
        extra_env={
            "REFERRAL_BROKER_DEV_OUTBOX": os.environ.get(
                "REFERRAL_BROKER_DEV_OUTBOX", str((DEV_DIR / "outbox").resolve())
            )
        },
        log_to_terminal=True,
    )
    try:
        stack.up(clinics=DEMO_CLINICS)
        _print_started(stack)
        stack.serve(timeout=30)
        stack.worker()
        _print_welcome(stack.public_url, stack.database_url, stack.passphrase)
        while not stopping and all(p.running() for p in stack.programs):
            time.sleep(0.5)
        if not stopping:
            print("a process stopped unexpectedly; stopping the rest", file=sys.stderr)
            return 1
        return 0
    except KeyboardInterrupt:
        return 0
    except (ServerUnavailable, ProgramFailed, RuntimeError, TimeoutError) as exc:
        print(f"make dev: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.down()
        print("stopped.")


def _print_started(stack: Stack) -> None:
    if stack.postgres is not None:
        print(f"• PostgreSQL: private server on port {stack.postgres.port}, data in {DEV_DIR / 'postgres'}")
    if stack.redis is not None:
        print(f"• Redis: private server on port {stack.redis.port}")
    print(f"• migrations: {', '.join(stack.applied_migrations) if stack.applied_migrations else 'up to date'}")
    written = stack.written_keys
    print(f"• broker keys in {stack.keys_dir}/" + (f" (created {', '.join(written)})" if written else ""))
    print(f"• demo clinics: {', '.join(d.slug for d in DEMO_CLINICS)} (keys in {DEV_DIR / 'clinics'})")
    outbox = stack.env["REFERRAL_BROKER_DEV_OUTBOX"]
    print(
        f"• one-time codes for {stack.public_url}/rights: files in {outbox}/"
        + (" (e-mail goes by SMTP)" if stack.env.get("REFERRAL_BROKER_SMTP_URL") else "")
        + (" (text messages go to the SMS gateway)" if stack.env.get("REFERRAL_BROKER_SMS_URL") else "")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description="Run the whole product locally.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    return run_dev(host=args.host, port=args.port)


def _print_welcome(public_url: str, database_url: str, passphrase: str) -> None:
    clinic = DEMO_CLINICS[0]
    print(
        f"""
referral-broker is running at {public_url}

  Patients:  open {public_url}/ in a browser (find clinics, send a request, receipt, manage link)
             {public_url}/rights finds a patient's requests by e-mail or phone (codes: see "one-time codes")
  API:       {public_url}/schema  (GET /api/v1/clinics, GET /api/v1/consent, POST /api/v1/referrals)
  Operators: {public_url}/ops — first make an account (it prints the TOTP secret for your app; the
             password, at least 12 characters, is asked for on the terminal or read from
             REFERRAL_BROKER_OPERATOR_PASSWORD):
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
    REFERRAL_CLINIC_PASSPHRASE='{passphrase}' \\
      .venv/bin/referral-clinic pull --dir {DEV_DIR}/clinics/{clinic.slug} --out {DEV_DIR}/inbox/{clinic.slug}
  Or read it as the clinic's staff do, in the desk (opens the browser; the passphrase is asked on its page):
    .venv/bin/referral-clinic desk --dir {DEV_DIR}/clinics/{clinic.slug} --out {DEV_DIR}/inbox/{clinic.slug}

  As the operator:
    DATABASE_URL={database_url} .venv/bin/referral-broker clinic list

Ctrl-C stops the server, the worker and the private databases.
""",
        flush=True,
    )
