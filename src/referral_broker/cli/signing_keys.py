"""`referral-broker keys rotate-signing | activate-signing | retire-signing | signing-status` (decision 0071)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from referral_broker.cli.command_context import run_with_context
from referral_broker.services import signing_rotation
from referral_broker.services.signing_rotation import RotationRefused

EXIT_REFUSED = 3


def _refused(exc: RotationRefused) -> int:
    print(f"referral-broker: refused: {exc}", file=sys.stderr)
    return EXIT_REFUSED


def cmd_rotate(args: argparse.Namespace) -> int:
    try:
        done = run_with_context(signing_rotation.rotate)
    except RotationRefused as exc:
        return _refused(exc)
    verb = "resumed announcing" if done.resumed else "made"
    print(f"{verb} the new signing key {done.new_key_id} (not signing yet; {done.old_key_id} still signs)")
    print(f"announced to {done.statements} clinic(s) in their inboxes; fingerprint of the new key: {done.fingerprint}")
    print("watch `referral-broker keys signing-status` (or /ops) until clinics have pinned it, then run:")
    print("  referral-broker keys activate-signing")
    return 0


def cmd_activate(args: argparse.Namespace) -> int:
    try:
        old, new, unpinned = run_with_context(signing_rotation.activate)
    except RotationRefused as exc:
        return _refused(exc)
    print(f"signing key {new} now signs envelopes, receipts and webhooks; {old} stays accepted until retired")
    print("running serve and worker processes take the new key by themselves (they re-read the keys folder)")
    if unpinned:
        names = ", ".join(p.slug for p in unpinned)
        print(f"not pinned yet: {names}; what is signed for them now waits until they pull the announcement")
    print("when every clinic has pinned it: referral-broker keys retire-signing")
    return 0


def cmd_retire(args: argparse.Namespace) -> int:
    try:
        done = run_with_context(lambda ctx: signing_rotation.retire(ctx, force=args.force))
    except RotationRefused as exc:
        return _refused(exc)
    if done.forced:
        print(
            "WARNING: retired although these clinics have not pinned the new key: "
            + ", ".join(done.forced)
            + ". They will see envelopes signed by a key they do not know; call each on a number you already "
            "know and have them run `referral-clinic pin-broker-key` with broker.pub (fingerprint: "
            "`referral-broker keys signing-status`)",
            file=sys.stderr,
        )
    print(f"retired signing key {done.old_key_id}; it is removed from the keys folder")
    print(f"{done.resigned} waiting envelope(s) signed again by {done.new_key_id}; {done.statements} clinic(s) told")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    state = run_with_context(signing_rotation.status)
    row: dict[str, Any] = {
        "phase": state.phase,
        "active": state.active_key_id,
        "next": state.next_key_id,
        "previous": state.previous_key_id,
        "clinics": [
            {
                "slug": p.slug,
                "status": p.status,
                "pinned_at": p.acknowledged_at.isoformat() if p.acknowledged_at else None,
            }
            for p in state.pins
        ],
    }
    if args.json:
        print(json.dumps(row, indent=2))
        return 0
    print(f"phase: {state.phase}; signing key {state.active_key_id}")
    if state.next_key_id:
        print(f"announced, not yet signing: {state.next_key_id}")
    if state.previous_key_id:
        print(f"previous key, still accepted by clinics: {state.previous_key_id}")
    for p in row["clinics"]:
        print(f"  {p['slug']:<24} {p['status']:<10} {'pinned ' + p['pinned_at'] if p['pinned_at'] else 'NOT pinned'}")
    return 0


def add_commands(keys: Any) -> None:
    """Add the signing-key commands to `referral-broker keys`."""
    keys.add_parser(
        "rotate-signing", help="make a new signing key (not yet signing) and announce it to every clinic"
    ).set_defaults(func=cmd_rotate)
    keys.add_parser(
        "activate-signing", help="sign with the announced key from now on (the old one stays accepted)"
    ).set_defaults(func=cmd_activate)
    retire = keys.add_parser("retire-signing", help="end the overlap: remove the old signing key")
    retire.add_argument(
        "--force", action="store_true", help="retire although some active clinics have not pinned the new key"
    )
    retire.set_defaults(func=cmd_retire)
    st = keys.add_parser("signing-status", help="the signing keys and which clinics have pinned the new one")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)
