"""`referral-broker operator create|list`, `audit verify`, `clinic set-contact|add-key|revoke-key`."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Any

from referral_broker.cli.command_context import run_with_context
from referral_broker.services import clinic_keys, monitoring, notifications, operators
from referral_broker.services.settings import ConfigError, with_secret_files
from referral_broker.store import operators as operator_store

PASSWORD_VARIABLE = "REFERRAL_BROKER_OPERATOR_PASSWORD"  # noqa: S105 - the variable's name


class PasswordUnavailable(ConfigError):
    """No password in the environment and no terminal to ask on."""


def _password() -> str:
    given = with_secret_files(os.environ).get(PASSWORD_VARIABLE)  # or from `…_PASSWORD_FILE`, as every variable
    if given:
        return given
    if not sys.stdin.isatty():
        raise PasswordUnavailable(f"set {PASSWORD_VARIABLE} or run this on a terminal to be asked for the password")
    first = getpass.getpass("Password for the new operator: ")
    if getpass.getpass("Again: ") != first:
        raise PasswordUnavailable("the two passwords differ; nothing was created")
    return first


def cmd_operator_create(args: argparse.Namespace) -> int:
    password = _password()
    made: operators.NewOperator = run_with_context(
        lambda ctx: operators.create_operator(ctx, args.username, args.role, password, actor="operator-cli")
    )
    print(f"created {made.role} {made.username!r}")
    print("Add this to the operator's authenticator app now; it is not shown again:")
    print(f"  secret: {made.totp_secret}")
    print(f"  uri:    {made.provisioning_uri}")
    return 0


def cmd_operator_list(args: argparse.Namespace) -> int:
    rows: list[operator_store.OperatorRow] = run_with_context(lambda ctx: operator_store.all_operators(ctx.pool))
    if not rows:
        print("no operators yet; make one with `referral-broker operator create --username NAME --role operator`")
    for r in rows:
        state = "disabled" if r.disabled_at else "active"
        print(f"{r.username:<24} {r.role:<9} {state}")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    check: monitoring.ChainCheck = run_with_context(monitoring.check_audit_chain)
    if check.broken is None:
        print(f"audit trail intact: {check.checked} events checked")
        return 0
    print(
        f"audit trail BROKEN at event #{check.broken.event_id}: {check.broken.reason} "
        f"({check.checked} events before it are intact)",
        file=sys.stderr,
    )
    return 1


def cmd_clinic_set_contact(args: argparse.Namespace) -> int:
    run_with_context(
        lambda ctx: notifications.set_contact(
            ctx, args.slug, email=args.email or None, webhook_url=args.webhook or None, actor="operator-cli"
        )
    )
    channels = [c for c, v in (("e-mail", args.email), ("webhook", args.webhook)) if v]
    print(f"{args.slug} is told by {' and '.join(channels)}" if channels else f"{args.slug} is told by no channel")
    return 0


def cmd_clinic_add_key(args: argparse.Namespace) -> int:
    data = Path(args.request).read_bytes()
    answer = run_with_context(lambda ctx: clinic_keys.request_key(ctx, data, actor="operator-cli"))
    print(f"recorded key request: key(s) {', '.join(answer.key_ids)} wait for verification")
    print(f"fingerprint: {answer.fingerprint}")
    print("call the clinic on a number you already know, compare the fingerprint, then run:")
    print(f"  referral-broker clinic verify SLUG --fingerprint {answer.fingerprint}")
    return 0


def cmd_clinic_revoke_key(args: argparse.Namespace) -> int:
    done: clinic_keys.Revocation = run_with_context(
        lambda ctx: clinic_keys.revoke_key(ctx, args.slug, args.key_id, actor="operator-cli")
    )
    print(
        f"revoked {done.key.purpose} key {done.key.key_id} of {args.slug}: nothing more is sealed to or signed with it"
    )
    if done.undeliverable:
        print(
            f"{len(done.undeliverable)} waiting referral(s) could be opened only with revoked keys; they are now "
            "undeliverable, shown on /ops, and the patients are asked on their manage page to submit again"
        )
    if done.key.purpose == "encryption" and done.active_encryption_keys == 0:
        print(
            f"warning: {args.slug} has no active encryption key left and cannot be chosen until a new key is verified"
        )
    return 0


def add_commands(sub: Any, clinic: Any) -> None:
    """Add the commands to `referral-broker`'s parser (`sub`) and to its `clinic` sub-commands."""
    operator = sub.add_parser("operator", help="operator accounts for /ops").add_subparsers(
        dest="operator_command", required=True
    )
    create = operator.add_parser(
        "create", help=f"make an account (password from ${PASSWORD_VARIABLE} or asked for); prints its TOTP secret"
    )
    create.add_argument("--username", required=True)
    create.add_argument("--role", required=True, choices=[r.value for r in operators.Role])
    create.set_defaults(func=cmd_operator_create)
    operator.add_parser("list", help="list operator accounts").set_defaults(func=cmd_operator_list)

    audit = sub.add_parser("audit", help="the audit trail").add_subparsers(dest="audit_command", required=True)
    audit.add_parser(
        "verify", help="check the hash chain; exit 1 and name the first broken link if an event was changed or removed"
    ).set_defaults(func=cmd_audit_verify)

    contact = clinic.add_parser("set-contact", help="where the clinic is told that referrals wait (empty removes)")
    contact.add_argument("slug")
    contact.add_argument("--email", default="", help="address for notices and reminders")
    contact.add_argument("--webhook", default="", help="https URL that receives signed notices")
    contact.set_defaults(func=cmd_clinic_set_contact)

    add_key = clinic.add_parser(
        "add-key", help="record a key request a clinic made (`referral-clinic key endorse --no-submit`) as pending"
    )
    add_key.add_argument("--request", required=True, metavar="FILE", help="the endorsed key-request.json")
    add_key.set_defaults(func=cmd_clinic_add_key)
    revoke = clinic.add_parser(
        "revoke-key", help="revoke a clinic key at once (lost or stolen); flags what only it could open"
    )
    revoke.add_argument("slug")
    revoke.add_argument("key_id", help="the key id, as `referral-broker clinic list` shows it")
    revoke.set_defaults(func=cmd_clinic_revoke_key)
