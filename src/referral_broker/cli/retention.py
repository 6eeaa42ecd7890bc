"""`referral-broker retention run`: anonymise what is due, now or as of a given moment."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from referral_broker.cli.command_context import run_with_context
from referral_broker.services import retention


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 time like 2026-11-22T03:00:00+01:00") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError("give the time with its offset, e.g. 2026-11-22T03:00:00+01:00")
    return moment


def cmd_retention_run(args: argparse.Namespace) -> int:
    result = run_with_context(
        lambda ctx: retention.anonymise_expired(
            ctx,
            now=args.now,
            batch_size=args.batch,
            progress=lambda n: print(f"  … {n} anonymised", file=sys.stderr, flush=True),
        )
    )
    print(
        f"anonymised {result.anonymised} referral(s) last dispatched (or, never dispatched, created) before "
        f"{result.cutoff.isoformat()}; {result.expired_deliveries} undelivered delivery(ies) expired; "
        f"{result.batches} batch(es); {result.expired_notices} unfetched clinic notice(s) expired; "
        f"{result.deleted_codes} lapsed one-time code(s) deleted; "
        f"{result.deleted_customer_messages} closed customer-service message(s) deleted; "
        f"{result.held} due referral(s) skipped: under legal hold"
    )
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    commands = sub.add_parser("retention", help="anonymise personal data that is due").add_subparsers(
        dest="retention_command", required=True
    )
    run = commands.add_parser("run", help="anonymise every referral past its retention period")
    run.add_argument("--now", type=_moment, help="act as if it were this time (ISO-8601 with offset)")
    run.add_argument("--batch", type=int, default=retention.BATCH, help="referrals per transaction")
    run.set_defaults(func=cmd_retention_run)
