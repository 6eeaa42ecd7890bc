"""`referral-clinic key add|endorse|rotate|destroy|export-join` and `passphrase`: the clinic's keys over their life.

- A second machine (or an offline backup key): `key export-join` on a machine already enrolled gives
  a small public join file; `key add --join FILE` on the new machine makes its own keys and a key
  request; `key endorse` on the enrolled machine vouches for it with its signing key and sends it;
  the broker's operator activates it after comparing the fingerprint on the phone.
- Rotation: `key rotate` makes a new encryption key here and asks the broker to retire the old one
  once the new one is verified. The old key keeps opening what was sealed to it; when nothing waits
  for it the broker calls it retired and `status`, `pull` and `watch` offer `key destroy`.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec

from referral_clinic import durable, keystore
from referral_clinic.broker_client import BrokerClient
from referral_clinic.keystore import ClinicDir, ClinicDirProblem
from referral_clinic.passphrase import kdf_profile, read_new_passphrase, read_passphrase
from referral_clinic.session import Session, say, unlock
from referral_protocol.clinic_identity import (
    EnrollmentInvalid,
    check_key_request,
    endorse,
    fingerprint_of,
    key_request_fingerprint,
    new_machine_request,
    rotation_request,
)
from referral_protocol.encoding import key_id

ROTATION_REQUEST_FILE = "rotation-request.json"
FINISHED_STATES = ("retired", "revoked")


def add_parsers(commands: Any) -> None:
    key = commands.add_parser("key", help="add a machine, rotate, or destroy this clinic's keys")
    sub = key.add_subparsers(dest="key_command", required=True, metavar="KEY_COMMAND")

    export = sub.add_parser("export-join", help="write the public join file a new machine starts from")
    export.add_argument("--dir", required=True, type=Path, help="an enrolled clinic folder")
    export.add_argument("--out", required=True, type=Path, help="the join file to write")

    add = sub.add_parser("add", help="on a new machine: make its keys and a key request from a join file")
    add.add_argument("--dir", required=True, type=Path, help="the new clinic folder to create")
    add.add_argument("--join", required=True, type=Path, help="the join file (or config.json) of an enrolled folder")

    end = sub.add_parser("endorse", help="vouch for a key request with this machine's key and send it to the broker")
    end.add_argument("--dir", required=True, type=Path, help="an enrolled clinic folder with an active key")
    end.add_argument("--request", required=True, type=Path, help="the new machine's key-request.json")
    end.add_argument("--no-submit", action="store_true", help="only write the endorsed request, for the operator")
    end.add_argument("--out", type=Path, help="where --no-submit writes it (default REQUEST.endorsed.json)")

    rotate = sub.add_parser("rotate", help="make a new encryption key here and retire the old one once verified")
    rotate.add_argument("--dir", required=True, type=Path, help="the clinic folder")
    rotate.add_argument("--replaces", help="key id of the key to retire (default: this machine's active key)")

    destroy = sub.add_parser("destroy", help="delete a retired or revoked key from this machine for good")
    destroy.add_argument("--dir", required=True, type=Path, help="the clinic folder")
    destroy.add_argument("--key-id", required=True, help="the key id, as `referral-clinic status` shows it")
    destroy.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    destroy.add_argument("--force", action="store_true", help="even if the broker does not call it retired")

    passphrase = commands.add_parser("passphrase", help="change the passphrase of this clinic's key file")
    passphrase.add_argument("--dir", required=True, type=Path, help="the clinic folder")


def run(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    if args.command == "passphrase":
        return _change_passphrase(args)
    handlers = {
        "export-join": lambda: _export_join(args),
        "add": lambda: _add(args),
        "endorse": lambda: _endorse(args, transport),
        "rotate": lambda: _rotate(args, transport),
        "destroy": lambda: _destroy(args, transport),
    }
    result: int = handlers[args.key_command]()
    return result


def identity_fingerprint(clinic: ClinicDir) -> str:
    """The fingerprint this folder was enrolled (or asked to be added) under."""
    config = clinic.load_config()
    if not clinic.enrollment_file.exists() and clinic.key_request_file.exists():  # a folder made by `key add`
        return key_request_fingerprint(_read_request(clinic.key_request_file))
    enrollment = clinic.load_enrollment()
    if enrollment.slug != config.slug:
        raise ClinicDirProblem(f"{clinic.enrollment_file} is for {enrollment.slug!r}, not {config.slug!r}")
    return fingerprint_of(enrollment)


def signing_key_id(session: Session) -> str:
    return key_id(session.secrets.signing_public)


def _read_request(path: Path) -> Any:
    try:
        return check_key_request(path.read_bytes())
    except OSError as exc:
        raise ClinicDirProblem(f"cannot read {path}: {exc.strerror}") from None
    except EnrollmentInvalid as exc:
        raise ClinicDirProblem(f"{path}: {exc}") from None


def _export_join(args: argparse.Namespace) -> int:
    config = ClinicDir(args.dir).load_config()
    durable.write_new_file(args.out, msgspec.json.format(msgspec.json.encode(config)) + b"\n")
    print(f"wrote {args.out}: copy it to the new machine and run `referral-clinic key add --dir DIR --join FILE`")
    return 0


def _add(args: argparse.Namespace) -> int:
    config = keystore.read_join_file(args.join)
    clinic = ClinicDir(args.dir)
    if clinic.key_file.exists():
        raise ClinicDirProblem(f"{clinic.key_file} already exists; refusing to overwrite a clinic's keys")
    profile = kdf_profile()
    passphrase = read_passphrase(confirm=True)
    secrets_, warnings = keystore.create_joined(args.dir, config, passphrase=passphrase, profile=profile)
    for warning in warnings:
        say(f"warning: {warning}")
    request = new_machine_request(secrets_, datetime.now(UTC))
    durable.write_file(clinic.key_request_file, msgspec.json.encode(request) + b"\n", replace=True)
    fingerprint = key_request_fingerprint(request)
    print(f"created {args.dir} for clinic {config.slug!r} with keys of its own")
    print(f"fingerprint: {fingerprint}")
    print(
        f"next: on a machine whose key is active, run `referral-clinic key endorse --dir DIR --request "
        f"{clinic.key_request_file}`, then read the broker's operator this fingerprint: {fingerprint}"
    )
    return 0


def _endorse(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    request = _read_request(args.request)
    ClinicDir(args.dir).load_config()
    session = unlock(args.dir, read_passphrase())
    try:
        endorsed = endorse(request, session.secrets)
    except EnrollmentInvalid as exc:
        raise ClinicDirProblem(str(exc)) from None
    data = msgspec.json.encode(endorsed)
    fingerprint = key_request_fingerprint(endorsed)
    if args.no_submit:
        out: Path = args.out or args.request.with_name(args.request.stem + ".endorsed.json")
        durable.write_new_file(out, data + b"\n")
        print(f"wrote {out}; the operator records it with `referral-broker clinic add-key --request {out.name}`")
    else:
        with session.client(transport) as client:
            answer = client.request_key(data)
        if answer.fingerprint != fingerprint:
            raise ClinicDirProblem("the broker computed another fingerprint for this request; do not verify it")
        print(f"the broker recorded the key request; key(s) {', '.join(answer.key_ids)} wait for verification")
    print(f"fingerprint: {fingerprint}")
    print(f"next: read the broker's operator this fingerprint over the phone: {fingerprint}")
    return 0


def _rotate(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    clinic = ClinicDir(args.dir)
    clinic.load_config()
    profile = kdf_profile()
    passphrase = read_passphrase()
    with clinic.locked():
        session = unlock(args.dir, passphrase)
        with session.client(transport) as client:
            replaces = _key_to_replace(client, session, args.replaces)
            rotated, _ = session.secrets.with_new_encryption_key()
            request = rotation_request(rotated, rotated.encryption_public(0), replaces, datetime.now(UTC))
            data = msgspec.json.encode(request)
            # The new key is on disk before the broker hears of it, so nothing is ever sealed to a key we lack.
            clinic.save_secrets(rotated, passphrase, profile)
            durable.write_file(clinic.path / ROTATION_REQUEST_FILE, data + b"\n", replace=True)
            answer = client.request_key(data)
    fingerprint = key_request_fingerprint(request)
    if answer.fingerprint != fingerprint:
        raise ClinicDirProblem("the broker computed another fingerprint for this request; do not verify it")
    new_id = rotated.encryption_key_ids[0]
    print(f"made encryption key {new_id}; once it is verified it replaces {replaces}, which keeps opening")
    print("what was sealed to it until that is all acknowledged")
    print(f"fingerprint: {fingerprint}")
    print(f"next: read the broker's operator this fingerprint over the phone: {fingerprint}")
    return 0


def _key_to_replace(client: BrokerClient, session: Session, given: str | None) -> str:
    status = client.status()
    held = set(session.secrets.encryption_key_ids)
    active_here = [
        k.key_id for k in status.keys if k.purpose == "encryption" and k.state == "active" and k.key_id in held
    ]
    if given is not None:
        if given not in active_here:
            raise ClinicDirProblem(f"{given} is not an active encryption key held on this machine")
        return given
    if len(active_here) != 1:
        raise ClinicDirProblem(
            "this machine holds "
            + (
                f"{len(active_here)} active keys; name one with --replaces"
                if active_here
                else "no active key; a rotation starts from one"
            )
        )
    return active_here[0]


def _destroy(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    clinic = ClinicDir(args.dir)
    clinic.load_config()
    profile = kdf_profile()
    passphrase = read_passphrase()
    with clinic.locked():
        session = unlock(args.dir, passphrase)
        held = session.secrets.encryption_key_ids
        if args.key_id not in held:
            raise ClinicDirProblem(f"this machine holds no encryption key {args.key_id}; it holds {', '.join(held)}")
        if len(held) == 1:
            raise ClinicDirProblem("it is the only encryption key on this machine; nothing could be opened without it")
        if not args.force:
            with session.client(transport) as client:
                states = {k.key_id: k for k in client.status().keys}
            state = states[args.key_id].state if args.key_id in states else "unknown"
            if state not in FINISHED_STATES:
                raise ClinicDirProblem(
                    f"the broker calls key {args.key_id} {state}: referrals may still be sealed to it; "
                    "wait until it is retired (or revoked), or use --force"
                )
        if not args.yes and not _confirmed(args.key_id):
            print("nothing was destroyed")
            return 1
        clinic.save_secrets(session.secrets.without_encryption_key(args.key_id), passphrase, profile)
    print(f"destroyed encryption key {args.key_id}: this machine can no longer open anything sealed only to it")
    return 0


def _confirmed(key: str) -> bool:
    if not sys.stdin.isatty():
        raise ClinicDirProblem("add --yes to destroy a key without a terminal to confirm on")
    answer = input(f"Destroy key {key} for good? Type yes: ")
    return answer.strip().lower() == "yes"


def _change_passphrase(args: argparse.Namespace) -> int:
    clinic = ClinicDir(args.dir)
    clinic.load_config()
    profile = kdf_profile()
    with clinic.locked():
        current = read_passphrase()
        session = unlock(args.dir, current)  # a wrong passphrase stops here, with the file untouched
        new = read_new_passphrase()
        clinic.save_secrets(session.secrets, new, profile)
    print(f"the passphrase of {clinic.key_file} is changed; use the new one from now on")
    return 0
