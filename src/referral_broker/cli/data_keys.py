"""`referral-broker keys rotate-data | reencrypt | retire-data | data-status`: the data key's rotation.

The steps and why they come in this order: docs/operations.md ("Rotating the data key") and
docs/decisions/0069. Each command says what to do next; a refusal is one line and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from referral_broker.cli.command_context import run_with_context
from referral_broker.services import data_key_rotation as rotation
from referral_broker.services.context import BrokerContext

_RESTART = "restart the api and the workers (they read the keys folder when they start)"


def _batch(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 10_000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a batch size: give a whole number from 1 to 10000")
    return int(text)


def cmd_rotate_data(args: argparse.Namespace) -> int:
    done = run_with_context(lambda ctx: rotation.rotate(ctx, ctx.settings.keys_dir))
    print(f"data key {done.new_key_id} is now current; {done.old_key_id} stays readable as a fallback")
    print(f"next: {_RESTART}, then `referral-broker keys reencrypt`, then `referral-broker keys retire-data`")
    return 0


def _show(p: rotation.Progress) -> None:
    print(f"  … {p.table}: {p.rewritten} of {p.left_at_start} re-encrypted", file=sys.stderr, flush=True)


def cmd_reencrypt(args: argparse.Namespace) -> int:
    run = run_with_context(lambda ctx: rotation.reencrypt(ctx, batch_size=args.batch, progress=_show))
    print(f"re-encrypted {run.rewritten} stored value(s) under data key {run.current_key_id}; {run.left} left")
    if run.unreadable:
        print(
            f"referral-broker: {run.unreadable} value(s) could not be opened with the keys this command has: "
            "is REFERRAL_BROKER_KEYS_DIR the current folder? (the log names each row)",
            file=sys.stderr,
        )
    if run.left:
        return 1
    if run.fallback_key_ids:
        print(
            f"nothing is left under {', '.join(run.fallback_key_ids)}: `referral-broker keys retire-data` may now "
            "remove it"
        )
    return 0


def cmd_retire_data(args: argparse.Namespace) -> int:
    removed = run_with_context(lambda ctx: rotation.retire(ctx, ctx.settings.keys_dir))
    if not removed:
        print("there is no fallback data key to retire; nothing was changed")
        return 0
    print(f"retired data key(s) {', '.join(removed)}: their files are deleted")
    print(f"next: {_RESTART}; destroy every other copy of the retired key file (backups of the keys folder)")
    return 0


async def _status(ctx: BrokerContext) -> tuple[str, list[str], dict[str, int]]:
    vault = ctx.keys.vault
    return vault.current.id_hex, [k.id_hex for k in vault.fallbacks], await rotation.left(ctx)


def cmd_data_status(args: argparse.Namespace) -> int:
    current, fallbacks, left = run_with_context(_status)
    print(f"current data key: {current}")
    print(f"fallback data keys: {', '.join(fallbacks) if fallbacks else 'none'}")
    print("not yet under the current key: " + ", ".join(f"{t} {n}" for t, n in left.items()))
    return 0


def add_commands(keys: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys.add_parser(
        "rotate-data", help="make a new current data key; the old one stays readable until retired"
    ).set_defaults(func=cmd_rotate_data)
    reencrypt = keys.add_parser("reencrypt", help="re-encrypt every stored value under the current data key")
    reencrypt.add_argument("--batch", type=_batch, default=rotation.BATCH, help="values per transaction (1-10000)")
    reencrypt.set_defaults(func=cmd_reencrypt)
    keys.add_parser(
        "retire-data", help="remove the old data key (refused while anything is stored under it)"
    ).set_defaults(func=cmd_retire_data)
    keys.add_parser("data-status", help="the data keys and what is left to re-encrypt").set_defaults(
        func=cmd_data_status
    )
