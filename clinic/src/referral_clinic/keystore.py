"""The clinic's folder: its configuration, its passphrase-protected keys and its enrolment file.

Layout of DIR (mode 0700): `clinic.key` (ClinicSecrets, locked with the passphrase, mode 0600),
`config.json` (broker URL, pinned broker key, slug, name, organisation number, HER-id: the clinic's
identity, which its enrolment file and FHIR export repeat), `enrollment.json` (public keys for the
broker's operator; a folder made by `key add` has `key-request.json` instead), `ledger.jsonl` (what
was written and acknowledged), `last-pull.json` (when and what the last pull did), and the lock files
`.lock` and `.watch.lock` (`folder_lock`).
"""

from __future__ import annotations

import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

from referral_clinic import durable, folder_lock
from referral_clinic.folder_lock import ClinicDirBusy as ClinicDirBusy  # where callers look for it
from referral_protocol import organisation
from referral_protocol.clinic_identity import (
    MAX_CLINIC_NAME,
    ClinicSecrets,
    EnrollmentInvalid,
    check_enrollment,
    make_enrollment,
)
from referral_protocol.encoding import format_public_key, parse_public_key
from referral_protocol.enrolment import Enrollment, HerId, OrganisationNumber
from referral_protocol.errors import KeyFileError
from referral_protocol.keyfile import lock, unlock
from referral_protocol.referral import Slug
from referral_protocol.validation import DECODE_ERRORS, has_control_characters

CONFIG_FORMAT = "referral-clinic/config/v1"
KEY_FILE = "clinic.key"
CONFIG_FILE = "config.json"
ENROLLMENT_FILE = "enrollment.json"
LEDGER_FILE = "ledger.jsonl"
KEY_REQUEST_FILE = "key-request.json"
LAST_PULL_FILE = "last-pull.json"
MAX_NAME = MAX_CLINIC_NAME
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


class ClinicDirProblem(Exception):
    """The clinic folder or something given to make it is not usable; the message says what to do."""


class ClinicConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """`DIR/config.json`. A folder made before organisation numbers were asked for has none."""

    format: str
    broker_url: str
    broker_key: str  # "ed25519:<base64>", pinned at init: envelopes signed by any other key are refused
    slug: Slug
    name: str
    organisation_number: OrganisationNumber | None = None
    her_id: HerId | None = None

    @property
    def broker_public_key(self) -> bytes:
        return parse_public_key(self.broker_key)


@dataclass(frozen=True)
class Created:
    enrollment: Enrollment
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ClinicDir:
    path: Path

    @property
    def key_file(self) -> Path:
        return self.path / KEY_FILE

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def enrollment_file(self) -> Path:
        return self.path / ENROLLMENT_FILE

    @property
    def ledger_file(self) -> Path:
        return self.path / LEDGER_FILE

    @property
    def key_request_file(self) -> Path:
        return self.path / KEY_REQUEST_FILE

    @property
    def last_pull_file(self) -> Path:
        return self.path / LAST_PULL_FILE

    def save_secrets(self, secrets_: ClinicSecrets, passphrase: str, profile: str) -> None:
        """Replace the key file (atomically: temp file, fsync, rename) with `secrets_` locked by `passphrase`."""
        try:
            locked_key = lock(msgspec.json.encode(secrets_), passphrase, profile=profile)
        except KeyFileError as exc:
            raise ClinicDirProblem(str(exc)) from None
        durable.write_file(self.key_file, locked_key, replace=True)

    def load_config(self) -> ClinicConfig:
        self._require_initialised()
        try:
            config = msgspec.json.decode(self.config_file.read_bytes(), type=ClinicConfig)
            parse_public_key(config.broker_key)  # fail here, not halfway through a pull
        except (OSError, msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            raise ClinicDirProblem(f"{self.config_file} is damaged: {exc}") from None
        if config.format != CONFIG_FORMAT:
            raise ClinicDirProblem(f"{self.config_file} has unknown format {config.format!r}")
        return config

    def load_enrollment(self) -> Enrollment:
        self._require_initialised()
        try:
            return check_enrollment(self.enrollment_file.read_bytes())
        except OSError as exc:
            raise ClinicDirProblem(f"cannot read {self.enrollment_file}: {exc.strerror}") from None
        except EnrollmentInvalid as exc:
            raise ClinicDirProblem(f"{self.enrollment_file}: {exc}") from None

    def unlock(self, passphrase: str, config: ClinicConfig) -> ClinicSecrets:
        """Open the key file; a wrong passphrase is a ClinicDirProblem saying so."""
        try:
            plain = unlock(self.key_file.read_bytes(), passphrase)
            secrets_ = msgspec.json.decode(plain, type=ClinicSecrets)
        except OSError as exc:
            raise ClinicDirProblem(f"cannot read {self.key_file}: {exc.strerror}") from None
        except KeyFileError as exc:
            raise ClinicDirProblem(str(exc)) from None
        except DECODE_ERRORS:
            raise ClinicDirProblem(f"{self.key_file} opened but holds no clinic keys") from None
        if secrets_.slug != config.slug:
            raise ClinicDirProblem(f"{self.key_file} belongs to {secrets_.slug!r}, not to {config.slug!r}")
        return secrets_

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder's lock (`folder_lock.hold`), so two pulls (or inits) never interleave."""
        try:
            with folder_lock.hold(self.path):
                yield
        except folder_lock.ClinicDirUnusable as exc:
            raise ClinicDirProblem(str(exc)) from None

    def _require_initialised(self) -> None:
        if not self.path.is_dir():
            raise ClinicDirProblem(f"{self.path} does not exist; create it with `referral-clinic init`")
        identity = self.enrollment_file if not self.key_request_file.is_file() else self.key_request_file
        for needed in (self.config_file, self.key_file, identity):
            if not needed.is_file():
                raise ClinicDirProblem(
                    f"{self.path} is not a finished clinic folder ({needed.name} is missing); "
                    "run `referral-clinic init`"
                )


def new_config(
    *,
    broker_url: str,
    broker_key: str,
    slug: str,
    name: str,
    organisation_number: str | None,
    her_id: str | None = None,
) -> ClinicConfig:
    """Check what `init` was given, before anyone is asked for a passphrase."""
    try:
        checked_number = None if organisation_number is None else organisation.organisation_number(organisation_number)
        checked_her_id = None if her_id is None or not her_id.strip() else organisation.her_id(her_id)
    except organisation.OrganisationNumberInvalid as exc:
        raise ClinicDirProblem(str(exc)) from None
    return ClinicConfig(
        format=CONFIG_FORMAT,
        broker_url=check_broker_url(broker_url),
        broker_key=read_broker_key(broker_key),
        slug=check_slug(slug),
        name=check_name(name),
        organisation_number=checked_number,
        her_id=checked_her_id,
    )


def create(
    folder: Path, config: ClinicConfig, *, passphrase: str, profile: str, now: datetime | None = None
) -> Created:
    """Make a new clinic folder with fresh keys; never replace an existing key file."""
    clinic = ClinicDir(folder)
    warnings = _make_private_folder(folder)
    url = urlsplit(config.broker_url)
    if url.scheme == "http" and url.hostname not in _LOOPBACK:
        # envelopes stay sealed and signed, but who talks to the broker, and when, would be visible
        warnings.append(f"{config.broker_url} is plain http; use https outside a test setup")
    with clinic.locked():
        if clinic.key_file.exists():
            raise ClinicDirProblem(f"{clinic.key_file} already exists; refusing to overwrite a clinic's keys")
        secrets_ = ClinicSecrets.generate(config.slug)
        enrollment = make_enrollment(
            secrets_,
            config.name,
            now or datetime.now(UTC),
            organisation_number=config.organisation_number,
            her_id=config.her_id,
        )
        try:
            locked_key = lock(msgspec.json.encode(secrets_), passphrase, profile=profile)
        except KeyFileError as exc:
            raise ClinicDirProblem(str(exc)) from None
        # The key is written last: a crash before it leaves a folder that `init` may simply redo.
        durable.write_file(clinic.config_file, msgspec.json.format(msgspec.json.encode(config)) + b"\n", replace=True)
        durable.write_file(clinic.enrollment_file, msgspec.json.encode(enrollment) + b"\n", replace=True)
        durable.write_file(clinic.key_file, locked_key, replace=False)
    return Created(enrollment=enrollment, warnings=warnings)


def _make_private_folder(folder: Path) -> list[str]:
    if folder.exists() and not folder.is_dir():
        raise ClinicDirProblem(f"{folder} exists and is not a folder")
    if not folder.exists():
        try:
            folder.mkdir(mode=0o700, parents=True)
        except OSError as exc:
            raise ClinicDirProblem(f"cannot create {folder}: {exc.strerror}") from None
        folder.chmod(0o700)  # mkdir's mode is narrowed by the umask, never widened; say it exactly
        return []
    if sys.platform != "win32" and folder.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):  # Windows: ACLs, no modes
        return [f"{folder} can be read by other users of this machine; consider `chmod 700 {folder}`"]
    return []


def check_slug(slug: str) -> str:
    try:
        return msgspec.convert(slug, Slug)
    except msgspec.ValidationError:
        raise ClinicDirProblem(
            f"{slug!r} is not a valid slug: use 1-63 lower-case letters, digits and inner hyphens"
        ) from None


def check_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned or len(cleaned) > MAX_NAME or has_control_characters(cleaned, multiline=False):
        raise ClinicDirProblem(f"the clinic's name must be 1-{MAX_NAME} printable characters on one line")
    return cleaned


def check_broker_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
        raise ClinicDirProblem(f"{url!r} is not a broker address like https://broker.example")
    return url.strip().rstrip("/")


def read_broker_key(given: str) -> str:
    """`given` is the text `ed25519:<base64>` or the path of the broker's `broker.pub`."""
    text = given.strip()
    if not text.startswith("ed25519:"):
        try:
            text = Path(given).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ClinicDirProblem(f"cannot read the broker key from {given!r}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ClinicDirProblem(f"{given!r} is not a broker.pub file") from None
    try:
        return format_public_key(parse_public_key(text))
    except ValueError as exc:
        raise ClinicDirProblem(f"the broker key is not usable: {exc}") from None


def create_joined(
    folder: Path, config: ClinicConfig, *, passphrase: str, profile: str, now: datetime | None = None
) -> tuple[ClinicSecrets, list[str]]:
    """`key add`: a new folder for an enrolled clinic on another machine, with keys of its own.

    It gets the clinic's configuration (from a join file) and fresh signing and encryption keys; the
    key request that an existing machine endorses is written by the caller.
    """
    clinic = ClinicDir(folder)
    warnings = _make_private_folder(folder)
    with clinic.locked():
        if clinic.key_file.exists():
            raise ClinicDirProblem(f"{clinic.key_file} already exists; refusing to overwrite a clinic's keys")
        secrets_ = ClinicSecrets.generate(config.slug)
        try:
            locked_key = lock(msgspec.json.encode(secrets_), passphrase, profile=profile)
        except KeyFileError as exc:
            raise ClinicDirProblem(str(exc)) from None
        durable.write_file(clinic.config_file, msgspec.json.format(msgspec.json.encode(config)) + b"\n", replace=True)
        durable.write_file(clinic.key_file, locked_key, replace=False)
    return secrets_, warnings


def read_join_file(path: Path) -> ClinicConfig:
    """A join file: the public configuration of an existing folder (`key export-join`, or its config.json)."""
    try:
        config = msgspec.json.decode(path.read_bytes(), type=ClinicConfig)
    except OSError as exc:
        raise ClinicDirProblem(f"cannot read {path}: {exc.strerror}") from None
    except DECODE_ERRORS as exc:
        raise ClinicDirProblem(f"{path} is not a join file of referral-clinic: {exc}") from None
    if config.format != CONFIG_FORMAT:
        raise ClinicDirProblem(f"{path} has unknown format {config.format!r}")
    return new_config(
        broker_url=config.broker_url,
        broker_key=config.broker_key,
        slug=config.slug,
        name=config.name,
        organisation_number=config.organisation_number,
        her_id=config.her_id,
    )
