"""Operator sign-in: security.md controls 3 (Argon2id, TOTP once), 4 (limits that do not lock the owner
out), 5 (session ids, rotation, timeouts, server-side logout) and 6 (cookie attributes)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from datetime import timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from argon2 import PasswordHasher
from litestar.testing import AsyncTestClient

from referral_broker.cli.broker import main
from referral_broker.services import operators
from referral_broker.services.context import BrokerContext
from referral_broker.services.operators import LoginOutcome
from tests.ops.conftest import (
    PASSWORD,
    SESSION_COOKIE,
    Account,
    Clock,
    code_at,
    make_account,
    post_form,
    post_login,
    sign_in,
)


def _set_cookies(response: Any) -> dict[str, str]:
    """Each Set-Cookie header by cookie name, as sent."""
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie")}


async def _dashboard_status(client: AsyncTestClient[Any], session: str | None) -> int:
    client.cookies.delete(SESSION_COOKIE)
    if session is not None:
        client.cookies.set(SESSION_COOKIE, session, domain="testserver.local")
    return (await client.get("/ops", follow_redirects=False)).status_code


async def test_password_is_stored_as_an_argon2id_hash(broker: BrokerContext, operator: Account) -> None:
    stored = await broker.pool.fetchrow("SELECT password_hash, totp_secret_ct FROM operators")
    assert stored["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in stored["password_hash"]
    assert operator.totp_secret.encode() not in bytes(stored["totp_secret_ct"])  # encrypted under the data key


async def test_a_totp_code_is_required(client: AsyncTestClient[Any], operator: Account, clock: Clock) -> None:
    for code in ("", "000000", "12345"):
        if code == code_at(operator, clock()):
            continue
        response = await post_login(client, operator, clock, code=code)
        assert response.status_code == 401
        assert SESSION_COOKIE not in _set_cookies(response)
    assert (await post_login(client, operator, clock, password="wrong password!")).status_code == 401


async def test_a_replayed_totp_code_is_refused(
    client: AsyncTestClient[Any], broker: BrokerContext, operator: Account, clock: Clock
) -> None:
    code = code_at(operator, clock())
    assert (await post_login(client, operator, clock, code=code)).status_code == 303
    await post_form(client, "/ops/logout")
    replay = await post_login(client, operator, clock, code=code)  # same code, same time-step
    assert replay.status_code == 401
    assert "This code was already used. Wait for your app to show the next code" in replay.text
    assert SESSION_COOKIE not in _set_cookies(replay)
    # Only the right password reaches the code: a wrong one with the used code gets the one generic answer.
    guessed = await post_login(client, operator, clock, code=code, password="not the password!")
    assert guessed.status_code == 401 and "already used" not in guessed.text
    assert "The username, password or code is wrong." in guessed.text
    reasons = await broker.pool.fetch(
        "SELECT details->>'reason' AS r FROM audit_events WHERE action = 'operator.login_failed'"
    )
    assert [r["r"] for r in reasons] == ["code already used", "wrong password"]
    # An older step's code is refused too once a later one was used: codes only move forward.
    clock.advance(seconds=30)
    earlier = code_at(operator, clock() - timedelta(seconds=30))
    assert (await post_login(client, operator, clock, code=earlier)).status_code == 401
    assert (await post_login(client, operator, clock)).status_code == 303


async def test_failed_logins_past_the_limit_get_429_even_with_the_right_password(
    client: AsyncTestClient[Any], broker: BrokerContext, operator: Account, clock: Clock
) -> None:
    limit = broker.settings.ops_login_attempts
    for _ in range(limit):
        assert (await post_login(client, operator, clock, password="not the password")).status_code == 401
    throttled = await post_login(client, operator, clock)  # N+1: right password and code
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) > 0
    assert SESSION_COOKIE not in _set_cookies(throttled)
    # The window passes; the owner gets in.
    clock.advance(minutes=16)
    assert (await post_login(client, operator, clock)).status_code == 303


async def test_guessing_from_one_address_does_not_lock_the_owner_out_elsewhere(
    broker: BrokerContext, operator: Account, clock: Clock
) -> None:
    ctx = dataclasses.replace(broker, clock=clock)
    for _ in range(broker.settings.ops_login_attempts + 3):
        result = await operators.log_in(ctx, "olga", "guess", "000000", address="203.0.113.9", previous_session=None)
    assert result.outcome == LoginOutcome.THROTTLED
    owner = await operators.log_in(
        ctx, "olga", PASSWORD, code_at(operator, clock()), address="198.51.100.7", previous_session=None
    )
    assert owner.outcome == LoginOutcome.SIGNED_IN
    # Counters key on an HMAC: no IP address is stored.
    stored = await broker.pool.fetch("SELECT key FROM login_throttle")
    assert stored and all(b"203.0.113.9" not in bytes(r["key"]) for r in stored)


async def test_one_address_trying_many_accounts_is_limited_too(broker: BrokerContext, clock: Clock) -> None:
    ctx = dataclasses.replace(broker, clock=clock)
    victim = await make_account(broker, "victim")
    for i in range(broker.settings.ops_login_attempts_per_address):
        await operators.log_in(ctx, f"user{i}", "guess", "000000", address="203.0.113.10", previous_session=None)
    blocked = await operators.log_in(
        ctx, "victim", PASSWORD, code_at(victim, clock()), address="203.0.113.10", previous_session=None
    )
    assert blocked.outcome == LoginOutcome.THROTTLED


async def test_signing_in_is_not_counted_as_a_failure_of_the_address(
    broker: BrokerContext, operator: Account, clock: Clock
) -> None:
    """An attempt is counted before its check (control 21); a success takes its count back."""
    ctx = dataclasses.replace(broker, clock=clock)
    limit = broker.settings.ops_login_attempts_per_address
    for i in range(limit - 1):
        await operators.log_in(ctx, f"user{i}", "guess", "000000", address="203.0.113.11", previous_session=None)
    for _ in range(3):
        owner = await operators.log_in(
            ctx, "olga", PASSWORD, code_at(operator, clock()), address="203.0.113.11", previous_session=None
        )
        assert owner.outcome == LoginOutcome.SIGNED_IN
        clock.advance(seconds=30)
    last = await operators.log_in(ctx, "someone", "guess", "000000", address="203.0.113.11", previous_session=None)
    assert last.outcome == LoginOutcome.REFUSED  # the address's last failure: it was checked
    blocked = await operators.log_in(
        ctx, "olga", PASSWORD, code_at(operator, clock()), address="203.0.113.11", previous_session=None
    )
    assert blocked.outcome == LoginOutcome.THROTTLED


async def test_session_id_has_256_bits_and_only_its_hash_is_stored(
    client: AsyncTestClient[Any], broker: BrokerContext, operator: Account, clock: Clock
) -> None:
    session = await sign_in(client, operator, clock)
    assert len(session) >= 43  # token_urlsafe(32): 256 bits from the OS's CSPRNG
    stored = [bytes(r["id_hash"]) for r in await broker.pool.fetch("SELECT id_hash FROM operator_sessions")]
    assert stored == [hashlib.sha256(session.encode()).digest()]


async def test_old_session_cookie_is_refused_after_login_and_after_logout(
    client: AsyncTestClient[Any], operator: Account, clock: Clock
) -> None:
    first = await sign_in(client, operator, clock)
    assert await _dashboard_status(client, first) == 200
    second = await sign_in(client, operator, clock)  # a new login while `first` is still held: rotated
    assert second != first
    assert await _dashboard_status(client, first) == 303
    assert await _dashboard_status(client, second) == 200
    response = await post_form(client, "/ops/logout")
    assert response.status_code == 303 and response.headers["location"] == "/ops/login"
    assert await _dashboard_status(client, second) == 303  # ended on the server, not only in the browser
    assert await _dashboard_status(client, None) == 303


async def test_sessions_end_after_idle_time_and_after_the_absolute_limit(
    client: AsyncTestClient[Any], broker: BrokerContext, operator: Account, clock: Clock
) -> None:
    idle = broker.settings.ops_idle_minutes
    session = await sign_in(client, operator, clock)
    clock.advance(minutes=idle - 1)
    assert await _dashboard_status(client, session) == 200  # use keeps it alive …
    clock.advance(minutes=idle + 1)
    assert await _dashboard_status(client, session) == 303  # … idleness ends it
    started = clock()
    session = await sign_in(client, operator, clock)
    while await _dashboard_status(client, session) == 200:  # kept busy, never idle …
        clock.advance(minutes=idle - 1)
        assert clock() - started < timedelta(hours=broker.settings.ops_session_hours, minutes=idle)
    # … it still ends at the absolute limit.
    assert clock() - started >= timedelta(hours=broker.settings.ops_session_hours)


async def test_cookies_are_host_prefixed_secure_httponly_and_strict(
    client: AsyncTestClient[Any], operator: Account, clock: Clock
) -> None:
    login_page = await client.get("/ops/login")
    response = await post_login(client, operator, clock)
    cookies = {**_set_cookies(login_page), **_set_cookies(response)}
    for name in (SESSION_COOKIE, "__Host-csrf"):
        parsed = SimpleCookie()
        parsed.load(cookies[name])
        morsel = parsed[name]
        assert name.startswith("__Host-")
        assert morsel["secure"] and morsel["httponly"]
        assert morsel["samesite"].lower() == "strict"
        assert morsel["path"] == "/" and not morsel["domain"]


async def test_logins_and_logouts_are_audited_without_the_password(
    client: AsyncTestClient[Any], broker: BrokerContext, operator: Account, clock: Clock
) -> None:
    await post_login(client, operator, clock, password="Tr0ub4dor&3 wrong")
    await post_login(client, Account("Tr0ub4dor&3 typed as a username", "operator", operator.totp_secret), clock)
    await sign_in(client, operator, clock)
    await post_form(client, "/ops/logout")
    rows = await broker.pool.fetch("SELECT actor, action, subject, details::text AS d FROM audit_events ORDER BY id")
    actions = [(r["actor"], r["action"]) for r in rows if r["action"].startswith("operator.")]
    assert actions == [
        ("test", "operator.created"),
        ("operator:olga", "operator.login_failed"),
        ("anonymous", "operator.login_failed"),
        ("operator:olga", "operator.login"),
        ("operator:olga", "operator.logout"),
    ]
    text = " ".join(f"{r['actor']} {r['subject']} {r['d']}" for r in rows)
    assert "Tr0ub4dor" not in text and PASSWORD not in text


def test_operator_create_prints_the_totp_secret_once_and_the_account_works(
    clean_db: str, keys_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", clean_db)
    monkeypatch.setenv("REFERRAL_BROKER_KEYS_DIR", str(keys_dir))
    monkeypatch.delenv("REFERRAL_BROKER_OPERATOR_PASSWORD", raising=False)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["operator", "create", "--username", "kari", "--role", "auditor"]) == 2
    assert "REFERRAL_BROKER_OPERATOR_PASSWORD" in capsys.readouterr().err
    monkeypatch.setenv("REFERRAL_BROKER_OPERATOR_PASSWORD", "short")
    assert main(["operator", "create", "--username", "kari", "--role", "auditor"]) == 2
    assert "at least 12" in capsys.readouterr().err
    monkeypatch.setenv("REFERRAL_BROKER_OPERATOR_PASSWORD", PASSWORD)
    assert main(["operator", "create", "--username", "kari", "--role", "auditor"]) == 0
    out = capsys.readouterr().out
    assert "secret:" in out and "otpauth://totp/referral-broker:kari" in out
    assert PASSWORD not in out
    assert main(["operator", "create", "--username", "kari", "--role", "operator"]) == 2
    assert "exists already" in capsys.readouterr().err
    assert main(["operator", "list"]) == 0
    listed = capsys.readouterr().out
    assert "kari" in listed and "auditor" in listed


def test_the_new_operators_password_can_come_from_a_secret_file(
    clean_db: str, keys_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/operations.md: any `REFERRAL_BROKER_*` variable may be given as `NAME_FILE`; the password too."""
    monkeypatch.setenv("DATABASE_URL", clean_db)
    monkeypatch.setenv("REFERRAL_BROKER_KEYS_DIR", str(keys_dir))
    monkeypatch.delenv("REFERRAL_BROKER_OPERATOR_PASSWORD", raising=False)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    secret = tmp_path / "operator_password"
    secret.write_text(PASSWORD + "\n")
    monkeypatch.setenv("REFERRAL_BROKER_OPERATOR_PASSWORD_FILE", str(secret))
    assert main(["operator", "create", "--username", "siri", "--role", "operator"]) == 0
    stored = asyncio.run(_password_hash_of(clean_db, "siri"))
    assert PasswordHasher().verify(stored, PASSWORD)


async def _password_hash_of(database_url: str, username: str) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        found: str = await conn.fetchval("SELECT password_hash FROM operators WHERE username = $1", username)
        return found
    finally:
        await conn.close()
