"""`referral-broker`: the operator's command line (keys, migrate, serve, worker, clinic, ...)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from referral_broker.cli import data_keys, legal_hold, operations, retention, signing_keys
from referral_broker.cli.command_context import run_with_context
from referral_broker.crypto.broker_keys import BrokerKeysMissing, init_keys, load_keys
from referral_broker.crypto.data_keys import DataKeyError
from referral_broker.services import enrolment, signing_rotation
from referral_broker.services.settings import ConfigError, Settings
from referral_protocol.errors import DomainError

log = logging.getLogger("referral_broker")


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _settings() -> Settings:
    return Settings.from_env()


def cmd_keys_init(args: argparse.Namespace) -> int:
    # Only the keys folder: creating keys must not need the database's URL.
    folder: Path = Path(args.dir) if args.dir else Settings.one_from_env("keys_dir")
    written = init_keys(folder)
    for name in written:
        print(f"wrote {folder / name}")
    if not written:
        print(f"all broker keys already exist in {folder}; nothing was changed")
    print(f"clinics pin this key: {(folder / 'broker.pub').read_text().strip()}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from referral_broker.store.migrate import apply_migrations
    from referral_broker.store.pool import create_pool

    async def run() -> list[str]:
        pool = await create_pool(_settings().database_url, max_size=1)
        try:
            async with pool.acquire() as conn:
                return await apply_migrations(conn)
        finally:
            await pool.close()

    applied = asyncio.run(run())
    print("applied: " + ", ".join(applied) if applied else "the database is up to date")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from referral_broker.cli.http_server import server_options

    settings = _settings()  # refuse to start on bad configuration, with the variable named
    settings.check_fit_to_serve()
    load_keys(settings.keys_dir)  # and on a missing or wrong key file, with the file named
    uvicorn.run(
        "referral_broker.cli.broker:app_factory",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="info",
        **server_options(settings),
    )
    return 0


def app_factory() -> Any:
    from referral_broker.web.app import create_app

    configure_logging()
    return create_app(_settings())  # uvicorn calls this in each server process; `serve` checked the same


def cmd_worker(args: argparse.Namespace) -> int:
    from referral_broker.queue.worker import run_supervised

    settings = _settings()
    load_keys(settings.keys_dir)  # a missing or wrong key file: one line naming it, not a restart loop
    run_supervised(settings)
    return 0


def cmd_clinic_add(args: argparse.Namespace) -> int:
    data = Path(args.enrollment).read_bytes()
    categories = [c.strip() for c in args.categories.split(",") if c.strip()] if args.categories else []
    clinic, fingerprint = run_with_context(
        lambda ctx: enrolment.add_clinic(
            ctx,
            data,
            actor="operator-cli",
            city=args.city,
            categories=categories,
            description=args.description,
        )
    )
    print(f"enrolled {clinic.slug} ({clinic.name}); its keys wait for verification")
    print(
        f"organisation number: {clinic.organisation_number}" + (f", HER-id: {clinic.her_id}" if clinic.her_id else "")
    )
    print("check them in Enhetsregisteret (and the HER-id in Adresseregisteret) before verifying")
    print(f"fingerprint: {fingerprint}")
    print("call the clinic on a number you already know, compare the fingerprint, then run:")
    print(f"  referral-broker clinic verify {clinic.slug} --fingerprint {fingerprint}")
    return 0


def cmd_clinic_verify(args: argparse.Namespace) -> int:
    n = run_with_context(lambda ctx: enrolment.verify(ctx, args.slug, args.fingerprint, actor="operator-cli"))
    print(f"verified {args.slug}: {n} key(s) active; the clinic can now receive referrals")
    return 0


def cmd_clinic_list(args: argparse.Namespace) -> int:
    async def listed(ctx: Any) -> tuple[Any, Any]:
        return await enrolment.list_clinics(ctx), await signing_rotation.status(ctx)

    clinics, signing = run_with_context(listed)
    # While the broker's signing key changes: when each clinic acknowledged the announcement (decision 0071).
    pinned = {p.slug: p.acknowledged_at for p in signing.pins}
    rows: list[dict[str, Any]] = [
        {
            "slug": c.clinic.slug,
            "name": c.clinic.name,
            "status": c.clinic.status,
            "organisation_number": c.clinic.organisation_number,
            "her_id": c.clinic.her_id,
            "city": c.clinic.city,
            "categories": c.clinic.categories,
            "keys": [
                {"key_id": k.key_id, "purpose": k.purpose, "state": k.state, "fingerprint": k.fingerprint}
                for k in c.keys
            ],
            "fingerprint": c.keys[0].fingerprint if c.keys else None,
            "last_pull_at": c.clinic.last_pull_at.isoformat() if c.clinic.last_pull_at else None,
            "broker_key_pinned_at": _pinned_at(pinned, c.clinic.slug),
        }
        for c in clinics
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no clinics are enrolled")
    for r in rows:
        states = ", ".join(f"{k['purpose']} {k['key_id']}={k['state']}" for k in r["keys"])
        numbers = f"org.nr. {r['organisation_number'] or 'not given'}"
        numbers += f", HER-id {r['her_id']}" if r["her_id"] else ""
        line = f"{r['slug']:<24} {r['status']:<10} {r['name']} ({numbers})  [{states}]"
        if signing.pins:
            at = r["broker_key_pinned_at"]
            line += f"  new broker key: {'pinned ' + at if at else 'NOT pinned'}"
        print(line)
    return 0


def _pinned_at(pinned: dict[str, Any], slug: str) -> str | None:
    """When `slug` pinned the broker's announced signing key; None when it has not, or no change is under way."""
    at = pinned.get(slug)
    return at.isoformat() if at is not None else None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="referral-broker", description="Operate the referral broker.")
    sub = p.add_subparsers(dest="command", required=True)

    keys = sub.add_parser("keys", help="the broker's own keys").add_subparsers(dest="keys_command", required=True)
    k_init = keys.add_parser("init", help="create missing broker keys (never overwrites)")
    k_init.add_argument("--dir", help="keys folder (default: $REFERRAL_BROKER_KEYS_DIR or keys/)")
    k_init.set_defaults(func=cmd_keys_init)
    data_keys.add_commands(keys)
    signing_keys.add_commands(keys)

    sub.add_parser("migrate", help="apply pending database migrations").set_defaults(func=cmd_migrate)

    serve = sub.add_parser("serve", help="run the web server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="server processes")
    serve.set_defaults(func=cmd_serve)

    sub.add_parser("worker", help="run the job worker (supervised)").set_defaults(func=cmd_worker)

    clinic = sub.add_parser("clinic", help="enrol and inspect clinics").add_subparsers(
        dest="clinic_command", required=True
    )
    add = clinic.add_parser("add", help="enrol a clinic from its enrollment.json")
    add.add_argument("--enrollment", required=True, metavar="FILE")
    add.add_argument("--city")
    add.add_argument("--categories", help="comma-separated, e.g. physiotherapy,orthopaedics")
    add.add_argument("--description")
    add.set_defaults(func=cmd_clinic_add)
    verify = clinic.add_parser("verify", help="activate a clinic's keys after comparing the fingerprint")
    verify.add_argument("slug")
    verify.add_argument("--fingerprint", required=True)
    verify.set_defaults(func=cmd_clinic_verify)
    lst = clinic.add_parser("list", help="list enrolled clinics")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=cmd_clinic_list)
    operations.add_commands(sub, clinic)
    retention.add_commands(sub)
    legal_hold.add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except (ConfigError, BrokerKeysMissing, DataKeyError, DomainError, FileNotFoundError, FileExistsError) as exc:
        print(f"referral-broker: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"referral-broker: cannot reach a service: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
