"""`referral-broker referral hold|release|holds`: legal hold on a referral, by its reference (docs/operations.md)."""

from __future__ import annotations

import argparse
from typing import Any

from referral_broker.cli.command_context import run_with_context
from referral_broker.domain.legal_hold import NOTE_MAX, HoldReason
from referral_broker.services import legal_hold

ACTOR = "operator-cli"


def cmd_hold(args: argparse.Namespace) -> int:
    reason = HoldReason(args.reason)
    run_with_context(lambda ctx: legal_hold.place(ctx, args.reference, reason, args.note, actor=ACTOR))
    print(f"{args.reference.strip().upper()} is under legal hold ({reason}); the retention run skips it until released")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    done = run_with_context(lambda ctx: legal_hold.release(ctx, args.reference, actor=ACTOR))
    reference = args.reference.strip().upper()
    if done.anonymised:
        print(f"released {reference}; it was past its retention period and has been anonymised now")
    else:
        print(f"released {reference}; it is anonymised on the usual schedule")
    return 0


def cmd_holds(args: argparse.Namespace) -> int:
    holds = run_with_context(legal_hold.current)
    if not holds:
        print("no referral is under legal hold")
    for h in holds:
        print(f"{h.reference:<16} {h.reason:<16} since {h.held_at.date().isoformat()} by {h.held_by}: {h.note}")
    return 0


def add_commands(sub: Any) -> None:
    referral = sub.add_parser("referral", help="legal hold on a referral").add_subparsers(
        dest="referral_command", required=True
    )
    hold = referral.add_parser("hold", help="keep a referral past its retention period (a legal claim or an order)")
    hold.add_argument("reference", help="the referral's reference, e.g. RB-ABCDE-FGHJK")
    hold.add_argument("--reason", required=True, choices=[r.value for r in HoldReason])
    hold.add_argument(
        "--note", required=True, help=f"which case or order (at most {NOTE_MAX} characters; no names or contacts)"
    )
    hold.set_defaults(func=cmd_hold)
    release = referral.add_parser(
        "release", help="end the hold; a referral past its retention period is anonymised at once"
    )
    release.add_argument("reference")
    release.set_defaults(func=cmd_release)
    referral.add_parser("holds", help="list the referrals under legal hold").set_defaults(func=cmd_holds)
