"""`referral-broker operator create|list`, `audit verify` and `clinic set-contact`."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any

from referral_broker.cli.command_context import run_with_context
from referral_broker.services import monitoring, notifications, operators
from referral_broker.services.settings import ConfigError
from referral_broker.store import operators as operator_store

PASSWORD_VARIABLE = "REFERRAL_BROKER_OPERATOR_PASSWORD"  # noqa: S105 - the variable's name


class PasswordUnavailable(ConfigError):
    """No password in the environment and no terminal to ask on."""


def _password() -> str:
    given = os.environ.get(PASSWORD_VARIABLE)
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
