"""Configuration from the environment, checked once at start with a message naming the wrong variable."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import ip_network
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from referral_broker.domain.retention import RETENTION_MONTHS


class ConfigError(Exception):
    """A variable is missing or wrong; the message names it and says what is expected."""


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str
    keys_dir: Path
    public_url: str
    minimum_age: int
    dispatch_max_tries: int
    max_body_bytes: int
    worker_poll_delay: float
    job_timeout: int
    submit_rate: int = 5
    trusted_proxies: tuple[str, ...] = ()
    # Operating the broker (issue 5)
    ops_idle_minutes: int = 15
    ops_session_hours: int = 8
    ops_login_attempts: int = 5
    ops_login_attempts_per_address: int = 20
    pull_reminder_after_seconds: int = 24 * 3600
    worker_stall_after_seconds: int = 60
    smtp_url: str | None = None
    mail_from: str = "referral-broker@localhost"
    notify_max_tries: int = 8
    metrics_token: str | None = None
    retention_months: int = 5
    # The patient's rights (issue 4)
    rights_code_minutes: int = 15
    rights_session_minutes: int = 30
    rights_codes_per_hour: int = 5
    sms_url: str | None = None
    sms_token: str | None = None
    dev_outbox: Path | None = None
    # Slow clients (issue 21): how long a request's headers, and then its whole body, may take to arrive
    header_read_seconds: float = 10.0
    body_read_seconds: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = with_secret_files(os.environ if env is None else env)
        return cls(
            database_url=_url(env, "DATABASE_URL", ("postgres", "postgresql"), None),
            redis_url=_url(env, "REDIS_URL", ("redis", "rediss", "unix"), "redis://127.0.0.1:6379/0"),
            keys_dir=Path(env.get("REFERRAL_BROKER_KEYS_DIR", "keys")),
            public_url=_url(env, "REFERRAL_BROKER_PUBLIC_URL", ("http", "https"), "http://127.0.0.1:8000").rstrip("/"),
            minimum_age=_int(env, "REFERRAL_BROKER_MIN_AGE", 16, 0, 120),
            dispatch_max_tries=_int(env, "REFERRAL_BROKER_DISPATCH_MAX_TRIES", 8, 1, 100),
            max_body_bytes=_int(env, "REFERRAL_BROKER_MAX_BODY_BYTES", 64 * 1024, 1024, 1024 * 1024),
            worker_poll_delay=_float(env, "REFERRAL_BROKER_WORKER_POLL_DELAY", 0.05, 0.001, 5.0),
            job_timeout=_int(env, "REFERRAL_BROKER_JOB_TIMEOUT", 30, 2, 3600),
            submit_rate=_int(env, "REFERRAL_BROKER_SUBMIT_RATE", 5, 0, 100_000),
            trusted_proxies=_networks(env, "REFERRAL_BROKER_TRUSTED_PROXIES"),
            ops_idle_minutes=_int(env, "REFERRAL_BROKER_OPS_IDLE_MINUTES", 15, 1, 240),
            ops_session_hours=_int(env, "REFERRAL_BROKER_OPS_SESSION_HOURS", 8, 1, 24),
            ops_login_attempts=_int(env, "REFERRAL_BROKER_OPS_LOGIN_ATTEMPTS", 5, 1, 100),
            ops_login_attempts_per_address=_int(env, "REFERRAL_BROKER_OPS_LOGIN_ATTEMPTS_PER_ADDRESS", 20, 1, 1000),
            pull_reminder_after_seconds=_duration(env, "REFERRAL_BROKER_PULL_REMINDER_AFTER", 24 * 3600),
            worker_stall_after_seconds=_duration(env, "REFERRAL_BROKER_WORKER_STALL_AFTER", 60),
            smtp_url=_optional_url(env, "REFERRAL_BROKER_SMTP_URL", ("smtp", "smtps", "smtp+starttls")),
            mail_from=env.get("REFERRAL_BROKER_MAIL_FROM", "referral-broker@localhost"),
            notify_max_tries=_int(env, "REFERRAL_BROKER_NOTIFY_MAX_TRIES", 8, 1, 100),
            metrics_token=env.get("REFERRAL_BROKER_METRICS_TOKEN") or None,
            retention_months=_int(env, "REFERRAL_BROKER_RETENTION_MONTHS", RETENTION_MONTHS, 1, 120),
            rights_code_minutes=_int(env, "REFERRAL_BROKER_RIGHTS_CODE_MINUTES", 15, 1, 60),
            rights_session_minutes=_int(env, "REFERRAL_BROKER_RIGHTS_SESSION_MINUTES", 30, 1, 240),
            rights_codes_per_hour=_int(env, "REFERRAL_BROKER_RIGHTS_CODES_PER_HOUR", 5, 1, 100),
            sms_url=_optional_url(env, "REFERRAL_BROKER_SMS_URL", ("https", "http")),
            sms_token=env.get("REFERRAL_BROKER_SMS_TOKEN") or None,
            dev_outbox=Path(env["REFERRAL_BROKER_DEV_OUTBOX"]) if env.get("REFERRAL_BROKER_DEV_OUTBOX") else None,
            header_read_seconds=_duration(env, "REFERRAL_BROKER_HEADER_TIMEOUT", 10),
            body_read_seconds=_duration(env, "REFERRAL_BROKER_BODY_TIMEOUT", 30),
        )

    @property
    def is_production(self) -> bool:
        """Patients are sent to an https address: what every real deployment has and a developer's machine lacks."""
        return urlsplit(self.public_url).scheme == "https"

    def check_fit_to_serve(self) -> None:
        """What `serve` refuses to start without, beyond what every command needs."""
        if self.is_production and self.metrics_token is None:
            raise ConfigError(
                "REFERRAL_BROKER_METRICS_TOKEN is not set: with an https public URL /metrics must not be open to "
                "anyone; set it from a secret (REFERRAL_BROKER_METRICS_TOKEN_FILE) and give Prometheus the token"
            )


def with_secret_files(env: Mapping[str, str]) -> Mapping[str, str]:
    """`NAME_FILE=/run/secrets/x` supplies NAME from a file (compose and Kubernetes secrets).

    A value given directly wins; a named file that cannot be read stops the start with its name.
    """
    files = {k[: -len("_FILE")]: v for k, v in env.items() if k.endswith("_FILE") and _is_ours(k[: -len("_FILE")])}
    if not files:
        return env
    resolved = dict(env)
    for name, path in files.items():
        if name in resolved:
            continue
        try:
            resolved[name] = Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE names {path}, which cannot be read ({exc.strerror})") from None
    return resolved


def _is_ours(name: str) -> bool:
    """Only the broker's own variables; other programs' `*_FILE` variables are none of its business."""
    return name in ("DATABASE_URL", "REDIS_URL") or name.startswith("REFERRAL_BROKER_")


def _url(env: Mapping[str, str], name: str, schemes: tuple[str, ...], default: str | None) -> str:
    value = env.get(name, default)
    if not value:
        raise ConfigError(f"{name} is not set; expected a URL like {schemes[0]}://…")
    if urlsplit(value).scheme not in schemes:
        raise ConfigError(f"{name} must be a {' or '.join(schemes)}:// URL")
    return value


_N = TypeVar("_N", int, float)


def _number(env: Mapping[str, str], name: str, default: _N, low: _N, high: _N, kind: Callable[[str], _N]) -> _N:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ConfigError(f"{name} must be {what}, not {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    return _number(env, name, default, low, high, int)


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    return _number(env, name, default, low, high, float)


def _networks(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated IP addresses or CIDR ranges, each checked; an empty value means none."""
    found: list[str] = []
    for part in env.get(name, "").split(","):
        if not part.strip():
            continue
        try:
            found.append(str(ip_network(part.strip(), strict=False)))
        except ValueError:
            raise ConfigError(
                f"{name} must list IP addresses or ranges like 10.0.0.0/8, not {part.strip()!r}"
            ) from None
    return tuple(found)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(env: Mapping[str, str], name: str, default_seconds: int) -> int:
    """Seconds, written as `90`, `90s`, `15m`, `24h` or `2d`."""
    raw = env.get(name)
    if raw is None:
        return default_seconds
    text = raw.strip().lower()
    unit = _UNITS.get(text[-1:], 0)
    number = text[:-1] if unit else text
    if not number.isdigit() or int(number) == 0:
        raise ConfigError(f"{name} must be a duration like 90s, 15m, 24h or 2d, not {raw!r}")
    return int(number) * (unit or 1)


def _optional_url(env: Mapping[str, str], name: str, schemes: tuple[str, ...]) -> str | None:
    return _url(env, name, schemes, None) if env.get(name) else None
