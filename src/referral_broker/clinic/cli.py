"""`referral-clinic`: init, fingerprint, pull.

Exit codes: 0 everything went through; 1 the command ran but something did not (an envelope refused,
a write or an acknowledgement failed, the broker unreachable or refusing us, another pull running);
2 the command could not start (bad arguments, no or wrong passphrase, a missing or damaged folder).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import httpx

from referral_broker.clinic import keystore
from referral_broker.clinic.broker_client import BrokerClient, BrokerRefusedClinic
from referral_broker.clinic.inbox import DEFAULT_LIMIT, ClinicKeys, Inbox, PullReport
from referral_broker.clinic.keystore import ClinicDir, ClinicDirBusy, ClinicDirProblem
from referral_broker.clinic.ledger import Ledger, LedgerDamaged
from referral_broker.clinic.passphrase import PassphraseUnavailable, kdf_profile, read_passphrase
from referral_broker.crypto.clinic_identity import ClinicSecrets, fingerprint_of
from referral_broker.crypto.encoding import enrolment_fingerprint

EXIT_OK = 0
EXIT_INCOMPLETE = 1
EXIT_CANNOT_START = 2
MAX_LIMIT = 500  # the broker serves and acknowledges at most 500 at once


def main(argv: list[str] | None = None, *, transport: httpx.BaseTransport | None = None) -> int:
    """Run the tool; `transport` lets tests stand in for the broker."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "init":
            return _init(args)
        if args.command == "fingerprint":
            return _fingerprint(args)
        return _pull(args, transport)
    except (ClinicDirProblem, PassphraseUnavailable, LedgerDamaged) as exc:
        _say(str(exc))
        return EXIT_CANNOT_START
    except ClinicDirBusy as exc:
        _say(str(exc))
        return EXIT_INCOMPLETE
    except KeyboardInterrupt:
        _say("interrupted")
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="referral-clinic", description="Receive encrypted referrals from the referral broker."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = commands.add_parser("init", help="create this clinic's keys and enrolment file")
    init.add_argument("--dir", required=True, type=Path, help="the clinic folder to create")
    init.add_argument("--broker", required=True, help="the broker's address, e.g. https://broker.example")
    init.add_argument("--broker-key", required=True, help="the broker's broker.pub, or its text ed25519:...")
    init.add_argument("--slug", required=True, help="this clinic's short name at the broker")
    init.add_argument("--name", required=True, help="this clinic's full name")

    fingerprint = commands.add_parser("fingerprint", help="show the fingerprint to read to the broker")
    fingerprint.add_argument("--dir", required=True, type=Path, help="the clinic folder")

    pull = commands.add_parser("pull", help="fetch, decrypt, store and acknowledge new referrals")
    pull.add_argument("--dir", required=True, type=Path, help="the clinic folder")
    pull.add_argument("--out", required=True, type=Path, help="where the referral files are written")
    pull.add_argument("--limit", type=_limit, default=DEFAULT_LIMIT, help="referrals per page (default 100)")
    return parser


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 1 <= value <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_LIMIT}")
    return value


def _init(args: argparse.Namespace) -> int:
    folder: Path = args.dir
    config = keystore.new_config(broker_url=args.broker, broker_key=args.broker_key, slug=args.slug, name=args.name)
    if ClinicDir(folder).key_file.exists():  # asked again under the lock; this spares typing a passphrase
        raise ClinicDirProblem(f"{ClinicDir(folder).key_file} already exists; refusing to overwrite a clinic's keys")
    profile = kdf_profile()
    passphrase = read_passphrase(confirm=True)
    created = keystore.create(folder, config, passphrase=passphrase, profile=profile)
    for warning in created.warnings:
        _say(f"warning: {warning}")
    fingerprint = fingerprint_of(created.enrollment)
    print(f"created {folder} for clinic {config.slug!r}")
    print(f"fingerprint: {fingerprint}")
    print(
        f"next: send {ClinicDir(folder).enrollment_file} to the broker's operator "
        f"and read them this fingerprint over the phone: {fingerprint}"
    )
    return EXIT_OK


def _fingerprint(args: argparse.Namespace) -> int:
    clinic = ClinicDir(args.dir)
    config = clinic.load_config()
    enrollment = clinic.load_enrollment()
    if enrollment.slug != config.slug:
        raise ClinicDirProblem(f"{clinic.enrollment_file} is for {enrollment.slug!r}, not {config.slug!r}")
    print(fingerprint_of(enrollment))
    return EXIT_OK


def _pull(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    clinic = ClinicDir(args.dir)
    config = clinic.load_config()
    with clinic.locked():
        secrets_ = clinic.unlock(read_passphrase(), config)
        outdir = _output_folder(args.out)
        ledger = Ledger(clinic.ledger_file)
        keys = ClinicKeys(
            slug=config.slug,
            broker_key=config.broker_public_key,
            private_keys=list(secrets_.encryption_secrets),
        )
        with BrokerClient(
            config.broker_url,
            signing_seed=secrets_.signing_seed,
            signing_public=secrets_.signing_public,
            transport=transport,
        ) as client:
            report = Inbox(client, ledger, outdir, keys).pull(args.limit)
    _print_report(report, secrets_)
    return EXIT_OK if report.complete else EXIT_INCOMPLETE


def _output_folder(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise ClinicDirProblem(f"{path} exists and is not a folder")
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ClinicDirProblem(f"cannot create {path}: {exc.strerror}") from None
    return path


def _print_report(report: PullReport, secrets_: ClinicSecrets) -> None:
    for delivery, reason in report.refused.items():
        _say(f"refused delivery {_shown(delivery)}: {reason}")
    for delivery, reason in report.local_failures.items():
        _say(f"delivery {_shown(delivery)}: {reason}")
    for delivery, reason in report.not_acknowledged.items():
        _say(f"not acknowledged: delivery {_shown(delivery)}: {reason}")
    print(report.summary())
    error = report.broker_error
    if isinstance(error, BrokerRefusedClinic):
        fingerprint = enrolment_fingerprint(secrets_.slug, secrets_.encryption_public(0), secrets_.signing_public)
        _say(f"{error}; the key may not be verified yet: ask the broker to verify fingerprint {fingerprint}")
    elif error is not None:
        _say(str(error))


def _shown(text: str) -> str:
    """A broker-supplied id made safe to print: no terminal control characters, bounded length."""
    cleaned = "".join(c if c.isprintable() else "?" for c in text)
    return cleaned if len(cleaned) <= 80 else cleaned[:77] + "..."


def _say(line: str) -> None:
    print(f"referral-clinic: {line}", file=sys.stderr)
