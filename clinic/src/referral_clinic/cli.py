"""`referral-clinic`: init, fingerprint, pull, watch, desk, status, export, key …, passphrase.

Exit codes: 0 everything went through; 1 the command ran but something did not (an envelope refused,
a write or an acknowledgement failed, the broker unreachable or refusing us, another pull running);
2 the command could not start (bad arguments, no or wrong passphrase, a missing or damaged folder).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec

from referral_clinic import broker_pins, durable, fhir, folder_lock, key_commands, keystore, watch
from referral_clinic.broker_client import BrokerRefusedClinic, BrokerRefusedRequest, BrokerUnavailable, ClockOff
from referral_clinic.inbox import DEFAULT_LIMIT, Inbox
from referral_clinic.keystore import ClinicDir, ClinicDirBusy, ClinicDirProblem
from referral_clinic.ledger import Ledger, LedgerDamaged
from referral_clinic.passphrase import PassphraseUnavailable, kdf_profile, read_passphrase
from referral_clinic.progress import PullProgress
from referral_clinic.pull_report import PullReport
from referral_clinic.session import Session, say, shown, unlock
from referral_protocol.clinic_identity import fingerprint_of
from referral_protocol.encoding import key_id, parse_public_key
from referral_protocol.enrolment import INBOX_START, InboxPage
from referral_protocol.key_change import broker_key_fingerprint

EXIT_OK = 0
EXIT_INCOMPLETE = 1
EXIT_CANNOT_START = 2
MAX_LIMIT = 500  # the broker serves and acknowledges at most 500 at once


def main(argv: list[str] | None = None, *, transport: httpx.BaseTransport | None = None) -> int:
    """Run the tool; `transport` lets tests stand in for the broker."""
    args = _parser().parse_args(argv)
    try:
        command: str = args.command
        if command == "init":
            return _init(args)
        if command == "fingerprint":
            return _fingerprint(args)
        if command == "pull":
            return _pull(args, transport)
        if command == "watch":
            return _watch(args, transport)
        if command == "status":
            return _status(args, transport)
        if command == "export":
            return _export(args)
        if command == "desk":
            return _desk(args, transport)
        if command == "pin-broker-key":
            return _pin_broker_key(args)
        return key_commands.run(args, transport)
    except (ClinicDirProblem, PassphraseUnavailable, LedgerDamaged, folder_lock.ClinicDirUnusable) as exc:
        say(str(exc))
        return EXIT_CANNOT_START
    except (ClinicDirBusy, BrokerUnavailable, BrokerRefusedClinic, BrokerRefusedRequest) as exc:
        say(str(exc))
        return EXIT_INCOMPLETE
    except KeyboardInterrupt:
        say("interrupted")
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
    init.add_argument(
        "--organisation-number",
        required=True,
        help="the organisation number (organisasjonsnummer) in Enhetsregisteret, nine digits, e.g. 923 609 016",
    )
    init.add_argument(
        "--her-id", default=None, help="the clinic's HER-id in Norsk Helsenett's address register, if it has one"
    )

    fingerprint = commands.add_parser("fingerprint", help="show the fingerprint to read to the broker")
    fingerprint.add_argument("--dir", required=True, type=Path, help="the clinic folder")

    pull = commands.add_parser("pull", help="fetch, decrypt, store and acknowledge new referrals")
    _pull_arguments(pull)
    pull.add_argument("--json", action="store_true", help="print the outcome as one JSON object")

    watch_ = commands.add_parser("watch", help="pull again and again; stop with Ctrl-C or SIGTERM")
    _pull_arguments(watch_)
    watch_.add_argument(
        "--interval",
        type=_seconds,
        default=None,
        help="pull every SECONDS instead of waiting for the broker to answer when something arrives (for a broker "
        "behind a proxy that cuts long requests)",
    )
    watch_.add_argument(
        "--max-backoff", type=_seconds, default=watch.DEFAULT_MAX_BACKOFF, help="longest wait after failures (900)"
    )

    status = commands.add_parser("status", help="keys, the last pull, and what waits at the broker")
    status.add_argument("--dir", required=True, type=Path, help="the clinic folder")
    status.add_argument("--json", action="store_true", help="print it as one JSON object")

    export = commands.add_parser("export", help="write a FHIR R4B bundle for each referral already pulled")
    export.add_argument("--dir", required=True, type=Path, help="the clinic folder (for the clinic's name)")
    export.add_argument("--out", required=True, type=Path, help="the folder `pull` wrote the referrals to")
    export.add_argument("--to", type=Path, help="where the bundles go (default OUT/fhir)")
    export.add_argument("--reference", action="append", help="only this referral (may be repeated)")

    desk = commands.add_parser("desk", help="open the desk: a page in this computer's browser to read referrals")
    desk.add_argument("--dir", required=True, type=Path, help="the clinic folder")
    desk.add_argument("--out", required=True, type=Path, help="where the referral files are written")
    desk.add_argument("--port", type=_port, default=0, help="the port on 127.0.0.1 (default: a free one)")
    desk.add_argument("--no-browser", action="store_true", help="only print the link; open no browser")
    desk.add_argument("--lang", choices=["nb", "en"], default="nb", help="the desk's language (default nb)")
    desk.add_argument(
        "--interval",
        type=_seconds,
        default=None,
        help="pull every SECONDS instead of waiting for the broker to answer when something arrives",
    )

    pin = commands.add_parser(
        "pin-broker-key",
        help="trust a new broker key from its broker.pub, after comparing its fingerprint with the broker by phone",
    )
    pin.add_argument("--dir", required=True, type=Path, help="the clinic folder")
    pin.add_argument("--file", required=True, type=Path, help="the broker.pub the broker's operator sent")
    pin.add_argument("--fingerprint", help="the fingerprint the operator read out (without it, only shown)")

    key_commands.add_parsers(commands)
    return parser


def _pin_broker_key(args: argparse.Namespace) -> int:
    """Pin a broker key out of band: for a clinic that missed the broker's key-change announcement."""
    clinic = ClinicDir(args.dir)
    clinic.load_config()
    if args.fingerprint is None:
        try:
            key = parse_public_key(args.file.read_text())
        except OSError as exc:
            raise ClinicDirProblem(f"cannot read {args.file}: {exc.strerror}") from None
        except ValueError as exc:
            raise ClinicDirProblem(f"{args.file}: {exc}") from None
        print(f"broker key {key_id(key)}, fingerprint {broker_key_fingerprint(key)}")
        say(
            "nothing was pinned: call the broker's operator on a number you already know, compare this fingerprint, "
            "and run the command again with --fingerprint"
        )
        return EXIT_CANNOT_START
    with clinic.locked():
        pinned_id, new = broker_pins.pin_from_file(clinic.path, args.file, args.fingerprint)
    if new:
        print(f"pinned broker key {pinned_id} beside the key pinned before; pull again to receive what waits")
    else:
        print(f"broker key {pinned_id} was already pinned; nothing was changed")
    return EXIT_OK


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be between 0 and 65535")
    return value


def _desk(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    from referral_clinic.desk import server  # the desk's web parts load only for this command

    try:
        return server.run(
            args.dir,
            args.out,
            lang=args.lang,
            port=args.port,
            browser=not args.no_browser,
            transport=transport,
            interval=args.interval,
        )
    except server.DeskCannotStart as exc:
        say(str(exc))
        return EXIT_INCOMPLETE if exc.busy else EXIT_CANNOT_START


def _pull_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--dir", required=True, type=Path, help="the clinic folder")
    command.add_argument("--out", required=True, type=Path, help="where the referral files are written")
    command.add_argument("--limit", type=_limit, default=DEFAULT_LIMIT, help="referrals per page (default 100)")
    command.add_argument(
        "--format",
        choices=["json", "fhir"],
        default="json",
        help="fhir: also write a FHIR R4B bundle per referral to OUT/fhir (the JSON file is always kept)",
    )


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 1 <= value <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_LIMIT}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0.05 <= value <= 86400:
        raise argparse.ArgumentTypeError("must be between 0.05 and 86400 seconds")
    return value


def _init(args: argparse.Namespace) -> int:
    folder: Path = args.dir
    config = keystore.new_config(
        broker_url=args.broker,
        broker_key=args.broker_key,
        slug=args.slug,
        name=args.name,
        organisation_number=args.organisation_number,
        her_id=args.her_id,
    )
    if ClinicDir(folder).key_file.exists():  # asked again under the lock; this spares typing a passphrase
        raise ClinicDirProblem(f"{ClinicDir(folder).key_file} already exists; refusing to overwrite a clinic's keys")
    profile = kdf_profile()
    passphrase = read_passphrase(confirm=True)
    created = keystore.create(folder, config, passphrase=passphrase, profile=profile)
    for warning in created.warnings:
        say(f"warning: {warning}")
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
    clinic.load_config()
    print(key_commands.identity_fingerprint(clinic))
    return EXIT_OK


def pull_once(
    session: Session,
    outdir: Path,
    *,
    limit: int,
    fhir_export: bool,
    transport: httpx.BaseTransport | None,
    progress: PullProgress | None = None,
    should_stop: Any = None,
    first_page: InboxPage | None = None,
) -> PullReport:
    """One pull under the folder's lock: fetch, write, acknowledge; record it; export FHIR if asked.

    `first_page`: the inbox's first page, already listed by a long poll (`LongPoll.take`)."""
    with session.clinic.locked():
        ledger = Ledger(session.clinic.ledger_file)
        with session.client(transport) as client:
            inbox = Inbox(
                client,
                ledger,
                outdir,
                session.keys,
                should_stop=should_stop or (lambda: False),
                on_item=progress.advance if progress else (lambda report: None),
            )
            report = inbox.pull(limit, first_page=first_page)
        _record_last_pull(session.clinic, report)
    if fhir_export and report.references:
        organization = fhir.Organization.of(session.config)
        exported = fhir.export(outdir, outdir / "fhir", organization, report.references)
        for name, why in exported.failed.items():
            report.local_failures[name] = f"FHIR export: {why}"
    return report


def _record_last_pull(clinic: ClinicDir, report: PullReport) -> None:
    record = {"format": "referral-clinic/last-pull/v1", "at": datetime.now(UTC).isoformat(), **report.as_json()}
    try:
        durable.write_new_file(clinic.last_pull_file, msgspec.json.encode(record) + b"\n")
    except OSError as exc:
        report.local_failures["last-pull.json"] = f"cannot record the pull: {exc.strerror or exc}"


def _pull(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    clinic = ClinicDir(args.dir)
    clinic.load_config()  # a missing folder is named before anyone is asked for a passphrase
    with clinic.locked():
        passphrase = read_passphrase()
        session = unlock(args.dir, passphrase)
    outdir = output_folder(args.out)
    with PullProgress.on_terminal(enabled=not args.json) as progress:
        report = pull_once(
            session, outdir, limit=args.limit, fhir_export=args.format == "fhir", transport=transport, progress=progress
        )
    if args.json:
        print(json.dumps(report.as_json(), sort_keys=True))
    else:
        print_received(report)
    print_report(report, session, summary=not args.json)
    if report.broker_error is None:
        _offer_destroy(session, transport, set())
    return EXIT_OK if report.complete else EXIT_INCOMPLETE


def output_folder(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise ClinicDirProblem(f"{path} exists and is not a folder")
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ClinicDirProblem(f"cannot create {path}: {exc.strerror}") from None
    return path


def print_received(report: PullReport) -> None:
    """One line a referral or notice received, then what arrived in all, in plain words (stdout)."""
    for received in report.received:
        print(received.line())
    print(report.plain_summary())


def print_report(report: PullReport, session: Session, *, summary: bool = True) -> None:
    for change in report.key_changes:
        say(change)
    for delivery, reason in report.refused.items():
        told = " (reported to the broker: it leaves the inbox)" if delivery in report.reported else ""
        say(f"refused delivery {shown(delivery)}: {reason}{told}")
    for delivery, reason in report.local_failures.items():
        say(f"delivery {shown(delivery)}: {reason}")
    for delivery, reason in report.not_acknowledged.items():
        say(f"not acknowledged: delivery {shown(delivery)}: {reason}")
    if summary:
        print(f"details: {report.summary()}")
    error = report.broker_error
    if isinstance(error, BrokerRefusedClinic) and not isinstance(error, ClockOff):
        fingerprint = key_commands.identity_fingerprint(session.clinic)
        say(f"{error}; the key may not be verified yet: ask the broker to verify fingerprint {fingerprint}")
    elif error is not None:
        say(str(error))


def _offer_destroy(session: Session, transport: httpx.BaseTransport | None, offered: set[str]) -> None:
    """With more than one key here, ask the broker which are finished, and offer to destroy those once."""
    held = session.secrets.encryption_key_ids
    if len(held) < 2:
        return
    try:
        with session.client(transport) as client:
            states = {k.key_id: k.state for k in client.status().keys}
    except (BrokerUnavailable, BrokerRefusedClinic):
        return  # only an offer: the next pull asks again
    for k in held:
        if states.get(k) in key_commands.FINISHED_STATES and k not in offered:
            offered.add(k)
            say(
                f"key {k} is {states[k]} at the broker and nothing waits for it: destroy it with "
                f"`referral-clinic key destroy --dir {session.clinic.path} --key-id {k}`"
            )


def _watch(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    clinic = ClinicDir(args.dir)
    clinic.load_config()
    with folder_lock.hold_for_watching(clinic.path):  # before the passphrase: a second watch is told at once
        return _keep_pulling(args, transport, clinic)


def _keep_pulling(args: argparse.Namespace, transport: httpx.BaseTransport | None, clinic: ClinicDir) -> int:
    passphrase = read_passphrase()  # held for the loop: the key file is opened again when it changes
    session = unlock(args.dir, passphrase)
    opened_at = clinic.key_file.stat().st_mtime_ns
    outdir = output_folder(args.out)
    offered: set[str] = set()

    def cycle(stopper: watch.Stopper) -> PullReport | None:
        nonlocal session, opened_at
        try:
            changed = clinic.key_file.stat().st_mtime_ns
            if changed != opened_at:  # rotated, a key destroyed, or the passphrase changed elsewhere
                session, opened_at = unlock(args.dir, passphrase), changed
            report = pull_once(
                session,
                outdir,
                limit=args.limit,
                fhir_export=args.format == "fhir",
                transport=transport,
                should_stop=stopper,
                first_page=poll.take(),
            )
        except ClinicDirBusy as exc:
            say(f"{exc}; skipping this turn")
            return None
        except OSError as exc:
            say(f"cannot use {outdir} or {args.dir}: {exc.strerror or exc}")
            return None
        if report.received:
            print_received(report)
        print_report(report, session, summary=False)
        if report.pulled or (report.broker_error is None and report.acknowledged):
            say(f"{datetime.now(UTC).isoformat(timespec='seconds')} {report.summary()}")
        if report.broker_error is None:
            _offer_destroy(session, transport, offered)
        return report

    poll = LongPoll(lambda: session, transport, limit=args.limit)

    def long_poll(stopper: watch.Stopper) -> watch.Waited:
        return watch.wait_for_news(poll, wait=watch.DEFAULT_WAIT, interrupted=stopper)

    stopper = watch.Stopper()
    if args.interval is None:
        how = "pulling as soon as the broker says something arrived"
    else:
        how = f"every {args.interval:g} s"
    say(f"watching {session.config.broker_url}, {how}; Ctrl-C or SIGTERM stops")
    with stopper.installed():
        return watch.loop(
            cycle,
            interval=args.interval or watch.DEFAULT_INTERVAL,
            max_backoff=args.max_backoff,
            stopper=stopper,
            long_poll=long_poll if args.interval is None else None,
        )


class LongPoll:
    """Ask the broker to answer when something waits in the inbox (at most `wait` s), for `watch.wait_for_news`:
    True when something does, False when nothing came, None (said why) when the broker could not be asked.

    It asks for a whole page (`limit`, from the inbox's start), and keeps a page that has something for the
    pull that follows (`take`), which files it instead of listing it again (decision 0138). Holds no lock: a
    `status` or key command may run meanwhile; the pull that follows takes the folder's lock, and its
    ledger makes a page another pull filed meanwhile harmless (filed once, acknowledged again)."""

    def __init__(
        self,
        session: Callable[[], Session],
        transport: httpx.BaseTransport | None,
        *,
        limit: int,
        wait: int = watch.DEFAULT_WAIT,
    ) -> None:
        self._session = session
        self._transport = transport
        self._limit = limit
        self._wait = wait
        self._lock = threading.Lock()
        self._asked = 0  # the latest request: an earlier one abandoned by an interrupted wait keeps nothing
        self._page: InboxPage | None = None

    def __call__(self) -> bool | None:
        with self._lock:
            self._asked += 1
            mine = self._asked
            self._page = None
        try:
            with self._session().client(self._transport) as client:
                page = client.fetch_inbox(self._limit, INBOX_START, wait=self._wait)
        except (BrokerUnavailable, BrokerRefusedClinic) as exc:
            say(str(exc))
            return None
        with self._lock:
            if mine == self._asked and page.items:
                self._page = page
        return bool(page.items)

    def take(self) -> InboxPage | None:
        """The page the last answer brought, once; None when it brought nothing (or was not the last)."""
        with self._lock:
            page, self._page = self._page, None
        return page


def _broker_keys(session: Session) -> list[dict[str, str]]:
    """The broker keys this folder trusts: the one in config.json, then any pinned beside it."""
    return [{"key_id": key_id(k), "fingerprint": broker_key_fingerprint(k)} for k in session.keys.pinned]


def _status(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    session = unlock(args.dir, read_passphrase())
    local_keys = session.secrets.encryption_key_ids
    last_pull: dict[str, Any] | None = None
    try:
        last_pull = msgspec.json.decode(session.clinic.last_pull_file.read_bytes())
    except (OSError, msgspec.DecodeError):
        last_pull = None
    broker_error: str | None = None
    report = None
    try:
        with session.client(transport) as client:
            report = client.status()
    except (BrokerUnavailable, BrokerRefusedClinic) as exc:
        broker_error = str(exc)
    states = {k.key_id: k for k in report.keys} if report else {}
    destroyable = [k for k in local_keys if k in states and states[k].state in ("retired", "revoked")]
    if args.json:
        print(
            json.dumps(
                {
                    "clinic": session.config.slug,
                    "broker": session.config.broker_url,
                    "signing_key": key_commands.signing_key_id(session),
                    "encryption_keys": local_keys,
                    "broker_view": None if report is None else msgspec.to_builtins(report),
                    "last_pull": last_pull,
                    "destroyable": destroyable,
                    "broker_error": broker_error,
                    "broker_keys": _broker_keys(session),
                },
                sort_keys=True,
                default=str,
            )
        )
    else:
        print(f"clinic {session.config.slug} at {session.config.broker_url}")
        signing = key_commands.signing_key_id(session)
        print(f"signing key {signing}: {_state_of(states, signing)}")
        for pinned in _broker_keys(session):
            print(f"broker key trusted: {pinned['key_id']} (fingerprint {pinned['fingerprint']})")
        for k in local_keys:
            held = states.get(k)
            waiting = f", {held.waiting} waiting sealed to it" if held and held.waiting else ""
            print(f"encryption key {k}: {_state_of(states, k)}{waiting}")
        if last_pull:
            print(
                f"last pull here: {last_pull.get('at')} (pulled {last_pull.get('pulled')}, "
                f"written {last_pull.get('written')}, complete {last_pull.get('complete')})"
            )
        else:
            print("last pull here: never")
        if report is not None:
            oldest = f", oldest since {report.oldest_waiting_at.isoformat()}" if report.oldest_waiting_at else ""
            print(f"waiting in the inbox: {report.waiting}{oldest}")
            if report.undeliverable:
                print(f"undeliverable (no key of the clinic can open them): {report.undeliverable}")
            last = report.last_pull_at.isoformat() if report.last_pull_at else "never"
            print(f"last pull seen by the broker: {last}")
        for k in destroyable:
            print(
                f"key {k} is {states[k].state} at the broker and nothing waits for it: destroy it with "
                f"`referral-clinic key destroy --dir {args.dir} --key-id {k}`"
            )
    if broker_error:
        say(broker_error)
        return EXIT_INCOMPLETE
    return EXIT_OK


def _state_of(states: dict[str, Any], key: str) -> str:
    held = states.get(key)
    return held.state if held is not None else "not known to the broker (or the broker was not asked)"


def _export(args: argparse.Namespace) -> int:
    config = ClinicDir(args.dir).load_config()
    outdir: Path = args.out
    if not outdir.is_dir():
        raise ClinicDirProblem(f"{outdir} is not a folder of pulled referrals")
    target = output_folder(args.to or outdir / "fhir")
    report = fhir.export(outdir, target, fhir.Organization.of(config), args.reference)
    for name, why in report.failed.items():
        say(f"{name}: {why}")
    print(f"exported {len(report.written)} FHIR bundle(s) to {target}, failed {len(report.failed)}")
    return EXIT_OK if not report.failed else EXIT_INCOMPLETE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
