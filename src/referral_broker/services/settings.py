"""Configuration from the environment, checked once at start with a message naming the wrong variable."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
    retention_months: int = 5

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
            retention_months=_int(env, "REFERRAL_BROKER_RETENTION_MONTHS", RETENTION_MONTHS, 1, 120),
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
