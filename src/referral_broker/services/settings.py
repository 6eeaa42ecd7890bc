"""The broker's configuration: one typed struct, read from the environment once at a program's start.

Each field says all there is about one setting, once: its environment variable, its one default, its limits
and what it means. `from_env` reads every field the same way and stops with a line naming a wrong variable;
`environment.markdown_table` writes the table in docs/operations.md from the same fields.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta

from referral_broker.domain.retention import RETENTION_MONTHS
from referral_broker.services.environment import (
    BASE_URL,
    DURATION,
    NETWORKS,
    TEXTS,
    read_one,
    read_settings,
    url,
    variable,
)
from referral_broker.services.environment import ConfigError as ConfigError

PostgresUrl = Annotated[str, url("postgres", "postgresql")]
RedisUrl = Annotated[str, url("redis", "rediss", "unix")]
WebUrl = Annotated[str, url("http", "https")]
SmtpUrl = Annotated[str, url("smtp", "smtps", "smtp+starttls")]
SmsGatewayUrl = Annotated[str, url("https", "http")]
ShortText = Annotated[str, Meta(min_length=1, max_length=300)]
OrganisationNumber = Annotated[str, Meta(pattern=r"^\d{3} ?\d{3} ?\d{3}$")]
EmailAddress = Annotated[str, Meta(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Every setting of the broker's programs (`serve`, `worker`, `migrate`, `retention`, ...)."""

    database_url: Annotated[PostgresUrl, variable("DATABASE_URL", "PostgreSQL URL")]
    redis_url: Annotated[RedisUrl, variable("REDIS_URL", "Redis URL (the job queue's doorbell)")] = (
        "redis://127.0.0.1:6379/0"
    )
    keys_dir: Annotated[Path, variable("REFERRAL_BROKER_KEYS_DIR", "folder of the broker's keys")] = Path("keys")
    public_url: Annotated[
        WebUrl,
        BASE_URL,
        variable(
            "REFERRAL_BROKER_PUBLIC_URL",
            "base of links given to patients (manage link); `https://…` marks a production configuration, in "
            "which `serve` requires `REFERRAL_BROKER_METRICS_TOKEN`",
        ),
    ] = "http://127.0.0.1:8000"
    minimum_age: Annotated[int, Meta(ge=0, le=120), variable("REFERRAL_BROKER_MIN_AGE", "minimum age to submit")] = 16
    dispatch_max_tries: Annotated[
        int,
        Meta(ge=1, le=100),
        variable("REFERRAL_BROKER_DISPATCH_MAX_TRIES", "dispatch attempts before deliveries become `dead`"),
    ] = 8
    max_body_bytes: Annotated[
        int,
        Meta(ge=1024, le=1024 * 1024),
        variable("REFERRAL_BROKER_MAX_BODY_BYTES", "request body cap (413 above it)"),
    ] = 64 * 1024
    # Slow clients (issue 21): how long a request's headers, and then its whole body, may take to arrive
    header_read_seconds: Annotated[
        float,
        DURATION,
        variable(
            "REFERRAL_BROKER_HEADER_TIMEOUT",
            "a connection whose request headers are not complete this long after their first byte (or after it "
            "opened) is closed (slowloris)",
        ),
    ] = 10.0
    body_read_seconds: Annotated[
        float,
        DURATION,
        variable(
            "REFERRAL_BROKER_BODY_TIMEOUT",
            "a request whose whole body has not arrived this long after it reached the app is answered 408 and "
            "its connection closed",
        ),
    ] = 30.0
    inbox_held_max: Annotated[
        int,
        Meta(ge=1, le=100_000),
        variable(
            "REFERRAL_BROKER_INBOX_HELD_MAX",
            "long-polling clinic inbox requests (`?wait=`) one api process holds at once; more are answered 503 "
            "with Retry-After",
        ),
    ] = 1000
    worker_poll_delay: Annotated[
        float,
        Meta(ge=0.001, le=5.0),
        variable("REFERRAL_BROKER_WORKER_POLL_DELAY", "seconds between arq queue polls"),
    ] = 0.05
    job_timeout: Annotated[
        int,
        Meta(ge=2, le=3600),
        variable("REFERRAL_BROKER_JOB_TIMEOUT", "seconds a job may run; a killed job re-runs this + 10 s later"),
    ] = 30
    submit_rate: Annotated[
        int,
        Meta(ge=0, le=100_000),
        variable(
            "REFERRAL_BROKER_SUBMIT_RATE",
            "referrals one client may have accepted per minute, form and API together; `0` = no limit",
        ),
    ] = 5
    submit_refused_rate: Annotated[
        int,
        Meta(ge=0, le=100_000),
        variable(
            "REFERRAL_BROKER_SUBMIT_REFUSED_RATE",
            "submissions one client may have refused (a field to fix) per minute, form and API together; counted "
            "apart from accepted ones so typing mistakes never use up the accepted ones; `0` = no limit",
        ),
    ] = 20
    trusted_proxies: Annotated[
        tuple[str, ...],
        NETWORKS,
        variable(
            "REFERRAL_BROKER_TRUSTED_PROXIES",
            "the proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed (the client's address for "
            "rate limits; https for HSTS)",
        ),
    ] = ()
    # Operating the broker (issue 5)
    ops_idle_minutes: Annotated[
        int,
        Meta(ge=1, le=240),
        variable("REFERRAL_BROKER_OPS_IDLE_MINUTES", "an operator session ends after this long unused"),
    ] = 15
    ops_session_hours: Annotated[
        int,
        Meta(ge=1, le=24),
        variable("REFERRAL_BROKER_OPS_SESSION_HOURS", "an operator session ends this long after login, however busy"),
    ] = 8
    ops_login_attempts: Annotated[
        int,
        Meta(ge=1, le=100),
        variable("REFERRAL_BROKER_OPS_LOGIN_ATTEMPTS", "failed logins per account and address in 15 min before 429"),
    ] = 5
    ops_login_attempts_per_address: Annotated[
        int,
        Meta(ge=1, le=1000),
        variable(
            "REFERRAL_BROKER_OPS_LOGIN_ATTEMPTS_PER_ADDRESS",
            "failed logins per address (any account) in 15 min before 429",
        ),
    ] = 20
    pull_reminder_after_seconds: Annotated[
        int,
        DURATION,
        variable(
            "REFERRAL_BROKER_PULL_REMINDER_AFTER",
            "a clinic whose referrals waited this long without a pull is flagged and reminded",
        ),
    ] = 24 * 3600
    worker_stall_after_seconds: Annotated[
        int, DURATION, variable("REFERRAL_BROKER_WORKER_STALL_AFTER", "no worker heartbeat for this long is flagged")
    ] = 60
    smtp_url: Annotated[
        SmtpUrl | None,
        variable(
            "REFERRAL_BROKER_SMTP_URL",
            "the mail server for clinic notices and patients' codes: `smtp://[user:pass@]host[:port]`, "
            "`smtp+starttls://…`, `smtps://…`",
            unset="e-mail off",
        ),
    ] = None
    mail_from: Annotated[
        str, variable("REFERRAL_BROKER_MAIL_FROM", "sender of clinic notices and of patients' codes by e-mail")
    ] = "referral-broker@localhost"
    # The patient's rights (issue 4)
    rights_code_minutes: Annotated[
        int,
        Meta(ge=1, le=60),
        variable("REFERRAL_BROKER_RIGHTS_CODE_MINUTES", "lifetime of a patient's one-time code (5 tries each)"),
    ] = 15
    rights_session_minutes: Annotated[
        int,
        Meta(ge=1, le=240),
        variable(
            "REFERRAL_BROKER_RIGHTS_SESSION_MINUTES", "how long a right code keeps the patient's rights pages open"
        ),
    ] = 30
    rights_codes_per_hour: Annotated[
        int,
        Meta(ge=1, le=100),
        variable("REFERRAL_BROKER_RIGHTS_CODES_PER_HOUR", "codes sent to one e-mail address or phone number per hour"),
    ] = 5
    sms_url: Annotated[
        SmsGatewayUrl | None,
        variable(
            "REFERRAL_BROKER_SMS_URL",
            'the SMS gateway: `POST {"to", "text"}` as JSON, any 2xx is success',
            unset="text messages off",
        ),
    ] = None
    sms_token: Annotated[
        str | None,
        variable(
            "REFERRAL_BROKER_SMS_TOKEN", "bearer token for the SMS gateway (use `REFERRAL_BROKER_SMS_TOKEN_FILE`)"
        ),
    ] = None
    dev_outbox: Annotated[
        Path | None,
        variable(
            "REFERRAL_BROKER_DEV_OUTBOX",
            "development only: codes by e-mail (when no SMTP) and by text are written as files here",
        ),
    ] = None
    notify_max_tries: Annotated[
        int,
        Meta(ge=1, le=100),
        variable("REFERRAL_BROKER_NOTIFY_MAX_TRIES", "attempts before a clinic notice is given up (and flagged)"),
    ] = 8
    metrics_token: Annotated[
        str | None,
        variable(
            "REFERRAL_BROKER_METRICS_TOKEN",
            "bearer token `/metrics` requires; `serve` refuses to start without it when "
            "`REFERRAL_BROKER_PUBLIC_URL` is https (use `REFERRAL_BROKER_METRICS_TOKEN_FILE`)",
            unset="open only with an `http://` public URL",
        ),
    ] = None
    retention_months: Annotated[
        int,
        Meta(ge=1, le=120),
        variable(
            "REFERRAL_BROKER_RETENTION_MONTHS",
            "calendar months after the last dispatch (creation, if never dispatched) before a referral is anonymised",
        ),
    ] = RETENTION_MONTHS
    # The privacy statement (/personvern, issue 22): who is responsible, who processes for them, how long what is kept
    controller_name: Annotated[
        ShortText | None,
        variable(
            "REFERRAL_BROKER_CONTROLLER_NAME",
            "the data controller's name, shown in the privacy statement; `serve` requires it with an https public URL",
            unset="an example, marked as one",
        ),
    ] = None
    controller_org_number: Annotated[
        OrganisationNumber | None,
        variable(
            "REFERRAL_BROKER_CONTROLLER_ORG_NUMBER",
            "the controller's organisation number (nine digits); required with an https public URL",
            unset="an example, marked as one",
        ),
    ] = None
    controller_address: Annotated[
        ShortText | None,
        variable(
            "REFERRAL_BROKER_CONTROLLER_ADDRESS",
            "the controller's postal address; required with an https public URL",
            unset="an example, marked as one",
        ),
    ] = None
    controller_email: Annotated[
        EmailAddress | None,
        variable(
            "REFERRAL_BROKER_CONTROLLER_EMAIL",
            "the address patients write to about their data; required with an https public URL",
            unset="an example, marked as one",
        ),
    ] = None
    processors: Annotated[
        tuple[str, ...],
        TEXTS,
        variable(
            "REFERRAL_BROKER_PROCESSORS",
            "the data processors the privacy statement names, e.g. `Hosting AS (servers, Norway); Mail AS "
            "(e-mail, EU)`; required with an https public URL",
        ),
    ] = ()
    # Customer service (issue 22)
    customer_service_retention_days: Annotated[
        int,
        Meta(ge=1, le=365),
        variable(
            "REFERRAL_BROKER_CUSTOMER_SERVICE_RETENTION_DAYS",
            "days after a customer-service message is closed before the retention run deletes it (and its answer)",
        ),
    ] = 30
    log_retention_days: Annotated[
        int,
        Meta(ge=1, le=365),
        variable(
            "REFERRAL_BROKER_LOG_RETENTION_DAYS",
            "days the programs' logs are kept, as the privacy statement says; set the log rotation to match",
        ),
    ] = 14
    customer_service_rate: Annotated[
        int,
        Meta(ge=0, le=100_000),
        variable(
            "REFERRAL_BROKER_CUSTOMER_SERVICE_RATE",
            "messages one client may send through the contact form per minute; `0` = no limit",
        ),
    ] = 3

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Every setting from the environment (secret files included), or a ConfigError naming a wrong one."""
        return read_settings(cls, with_secret_files(os.environ if env is None else env))

    @classmethod
    def one_from_env(cls, name: str, env: Mapping[str, str] | None = None) -> Any:
        """One setting, read as `from_env` reads it, for a command that needs only that one (`keys init`)."""
        return read_one(cls, name, with_secret_files(os.environ if env is None else env))

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
        missing = self.missing_controller_details()
        if self.is_production and missing:
            raise ConfigError(
                f"{', '.join(missing)} not set: with an https public URL the privacy statement must name the real "
                "controller and processors, not the examples"
            )

    def missing_controller_details(self) -> list[str]:
        """The privacy statement's settings still unset (the page shows examples, marked as such, for these)."""
        given = {
            "REFERRAL_BROKER_CONTROLLER_NAME": self.controller_name,
            "REFERRAL_BROKER_CONTROLLER_ORG_NUMBER": self.controller_org_number,
            "REFERRAL_BROKER_CONTROLLER_ADDRESS": self.controller_address,
            "REFERRAL_BROKER_CONTROLLER_EMAIL": self.controller_email,
            "REFERRAL_BROKER_PROCESSORS": self.processors or None,
        }
        return [name for name, value in given.items() if value is None]


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
