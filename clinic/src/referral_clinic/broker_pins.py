"""The broker keys this clinic trusts: the one pinned at `init` (config.json) and, during a key change,
the new one beside it (`broker-keys.json`), with a short history of changes for the desk and terminal.

`broker-keys.json` (`referral-clinic/broker-keys/v1`): `{"format", "keys": ["ed25519:<base64>"…],
"changes": [{"at", "action", "key_id", "fingerprint", "via"}…]}`. A program that predates it reads only
config.json and keeps trusting the key pinned there.

Every write replaces one file atomically (temporary file, fsync, rename). A retirement writes config.json
(the new key becomes the pinned one) before it drops the keys from broker-keys.json, so a crash between
the two leaves the new key trusted twice, never not at all.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from referral_clinic import durable
from referral_clinic.envelope_check import ClinicKeys, Refused
from referral_clinic.keystore import ClinicConfig, ClinicDir, ClinicDirProblem
from referral_protocol.encoding import (
    format_public_key,
    is_published_test_key,
    key_id,
    normalise_fingerprint,
    parse_public_key,
)
from referral_protocol.key_change import KeyChangeAction, KeyChangeStatement, broker_key_fingerprint

PINS_FILE = "broker-keys.json"
PINS_FORMAT = "referral-clinic/broker-keys/v1"
MAX_CHANGES = 20


class PinChange(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    at: datetime
    action: str  # "announce", "retire" or "pinned-from-file"
    key_id: str  # the key pinned (announce, file) or dropped (retire)
    fingerprint: str
    via: str  # the statement's id, or the file's name


class BrokerPins(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    format: str = PINS_FORMAT
    keys: list[str] = []
    changes: list[PinChange] = []


def _path(folder: Path) -> Path:
    return folder / PINS_FILE


def load(folder: Path) -> BrokerPins:
    path = _path(folder)
    if not path.exists():
        return BrokerPins()
    try:
        pins = msgspec.json.decode(path.read_bytes(), type=BrokerPins)
        for k in pins.keys:
            parse_public_key(k)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        raise ClinicDirProblem(f"{path} is damaged: {exc}") from None
    if pins.format != PINS_FORMAT:
        raise ClinicDirProblem(f"{path} has unknown format {pins.format!r}")
    return pins


def extra_keys(folder: Path) -> tuple[bytes, ...]:
    return tuple(parse_public_key(k) for k in load(folder).keys)


def _save(folder: Path, pins: BrokerPins) -> None:
    data = msgspec.json.format(msgspec.json.encode(pins)) + b"\n"
    durable.write_file(_path(folder), data, replace=True)


def _with_change(pins: BrokerPins, keys: list[str], change: PinChange) -> BrokerPins:
    return BrokerPins(keys=keys, changes=[*pins.changes, change][-MAX_CHANGES:])


def apply(keys: ClinicKeys, statement: KeyChangeStatement, *, now: datetime | None = None) -> tuple[ClinicKeys, str]:
    """Act on a verified, checked statement; returns the keys to use from now on and what to tell people
    ("" when nothing changed: a statement seen before)."""
    if keys.folder is None:
        raise Refused("a broker key change arrived, but this run has no clinic folder to pin it in")
    folder = keys.folder
    at = now or datetime.now(UTC)
    pinned = list(keys.pinned)
    new, old = statement.new_key, statement.old_key
    fingerprint = broker_key_fingerprint(new)
    if statement.action == KeyChangeAction.ANNOUNCE:
        if new in pinned:
            return keys, ""
        if is_published_test_key(new):
            raise Refused("the announced broker key is a published test key; it is not pinned")
        pins = load(folder)
        change = PinChange(at, "announce", key_id(new), fingerprint, statement.statement_id)
        _save(folder, _with_change(pins, [*pins.keys, format_public_key(new)], change))
        message = (
            f"the broker announced a new signing key {key_id(new)} (fingerprint {fingerprint}); it is pinned "
            f"beside {key_id(old)}, and envelopes signed by either are accepted until the old one retires"
        )
        return replace(keys, extra_broker_keys=(*keys.extra_broker_keys, new)), message
    # retire: the statement is signed by the new key, which we pin (checked by the caller)
    if old not in pinned and keys.broker_key == new:
        return keys, ""
    config = ClinicDir(folder).load_config()
    if config.broker_public_key != new:
        durable.write_file(
            ClinicDir(folder).config_file,
            msgspec.json.format(msgspec.json.encode(_repinned(config, new))) + b"\n",
            replace=True,
        )
    pins = load(folder)
    rest = [k for k in pins.keys if parse_public_key(k) not in (new, old)]
    _save(folder, _with_change(pins, rest, PinChange(at, "retire", key_id(old), fingerprint, statement.statement_id)))
    message = f"the broker retired its old signing key {key_id(old)}; only {key_id(new)} is accepted from now on"
    return replace(keys, broker_key=new, extra_broker_keys=()), message


def _repinned(config: ClinicConfig, key: bytes) -> ClinicConfig:
    return msgspec.structs.replace(config, broker_key=format_public_key(key))


def pin_from_file(folder: Path, file: Path, fingerprint: str) -> tuple[str, bool]:
    """Pin the broker key in `file` (a broker.pub) beside what is pinned, after the fingerprint read out by
    the broker's operator matched. Returns (key id, whether it was new)."""
    try:
        key = parse_public_key(file.read_text())
    except OSError as exc:
        raise ClinicDirProblem(f"cannot read {file}: {exc.strerror}") from None
    except ValueError as exc:
        raise ClinicDirProblem(f"{file}: {exc}") from None
    expected = broker_key_fingerprint(key)
    if normalise_fingerprint(fingerprint) != expected:
        raise ClinicDirProblem(
            f"the fingerprint given does not match the key in {file} ({expected}); nothing was pinned. Compare "
            "it again with the broker's operator, on a number you already know"
        )
    config = ClinicDir(folder).load_config()
    pins = load(folder)
    if key == config.broker_public_key or format_public_key(key) in pins.keys:
        return key_id(key), False
    change = PinChange(datetime.now(UTC), "pinned-from-file", key_id(key), expected, file.name)
    _save(folder, _with_change(pins, [*pins.keys, format_public_key(key)], change))
    return key_id(key), True
