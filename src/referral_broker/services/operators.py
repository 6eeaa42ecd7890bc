"""Operator accounts and sign-in: Argon2id passwords, a required TOTP code (each accepted once),
server-side sessions with idle and absolute timeouts, and failed-login limits that slow an attacker
without locking the account's owner out (security.md controls 3, 4 and 5).

Limits: attempts that do not succeed are counted per account-and-address and per address, in fixed
windows. Each attempt is counted before its check, in one statement that refuses it when either
counter is full (429), so parallel requests get no more checks than the limit; a success takes its
count back. The account itself is never locked, so the owner signing in from another address is not
affected by someone guessing from elsewhere.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from referral_broker.crypto.tokens import token_hash
from referral_broker.services.context import BrokerContext
from referral_broker.store import audit, operators
from referral_broker.store.operators import OperatorRow
from referral_protocol.errors import DomainError

#: How long failed logins are remembered, counted from the first failure of a window.
LOGIN_WINDOW = timedelta(minutes=15)
MIN_PASSWORD_LENGTH = 12
_USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,39}")
_ISSUER = "referral-broker"
_HASHER = PasswordHasher()  # Argon2id, RFC 9106 "low memory" parameters (64 MiB, t=3, p=4)


class Role(StrEnum):
    OPERATOR = "operator"  # watches and acts: retries, suspends, verifies keys
    AUDITOR = "auditor"  # reads only


class OperatorRefused(DomainError):
    """The account cannot be made as asked; the message says why."""


@dataclass(frozen=True)
class NewOperator:
    username: str
    role: Role
    totp_secret: str
    provisioning_uri: str


def totp_bound_to(operator_id: uuid.UUID) -> bytes:
    return b"operator-totp\x00" + operator_id.bytes


async def create_operator(ctx: BrokerContext, username: str, role: str, password: str, *, actor: str) -> NewOperator:
    """Make an account; the TOTP secret is returned once, to be put in the operator's authenticator."""
    username = username.strip().lower()
    if not _USERNAME.fullmatch(username):
        raise OperatorRefused("a username is 2–40 characters: lower-case letters, digits, '.', '_' or '-'")
    if role not in set(Role):
        raise OperatorRefused(f"the role must be one of {', '.join(Role)}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise OperatorRefused(f"the password must be at least {MIN_PASSWORD_LENGTH} characters long")
    if password.strip().lower() == username:
        raise OperatorRefused("the password must not be the username")
    password_hash = await asyncio.to_thread(_HASHER.hash, password)
    totp_secret = pyotp.random_base32()
    operator_id = uuid.uuid4()
    now = ctx.clock()
    async with ctx.pool.acquire() as conn, conn.transaction():
        try:
            await operators.insert_operator(
                conn,
                id=operator_id,
                username=username,
                role=role,
                password_hash=password_hash,
                totp_secret_ct=ctx.keys.vault.encrypt(totp_secret.encode(), bound_to=totp_bound_to(operator_id)),
                now=now,
            )
        except operators.UsernameTaken:
            raise OperatorRefused(f"an operator called {username!r} exists already") from None
        await audit.append(
            conn, at=now, actor=actor, action="operator.created", subject=username, details={"role": role}
        )
    uri = pyotp.TOTP(totp_secret).provisioning_uri(name=username, issuer_name=_ISSUER)
    return NewOperator(username, Role(role), totp_secret, uri)


# --- signing in -----------------------------------------------------------------------------------


class LoginOutcome(StrEnum):
    SIGNED_IN = "signed-in"
    REFUSED = "refused"  # wrong username, password or code: the same answer for each
    # The right password and a genuine code that was already used in its window: said so, since only someone
    # who knew the password gets this far (the code is checked after it), and the fix is to wait for the next.
    CODE_USED = "code-used"
    THROTTLED = "throttled"  # too many failures from this address, or for this account from it


@dataclass(frozen=True)
class LoginResult:
    outcome: LoginOutcome
    session_id: str | None = None  # the cookie value; only its hash is stored


@dataclass(frozen=True)
class SignedIn:
    username: str
    role: Role
    session_hash: bytes
    expires_at: datetime  # the earlier of the idle and the absolute timeout


def _throttle_keys(ctx: BrokerContext, username: str, address: str) -> tuple[bytes, bytes]:
    vault = ctx.keys.vault
    return (
        vault.blind_index("ops-login-account-address", f"{username}\x00{address}"),
        vault.blind_index("ops-login-address", address),
    )


@functools.cache
def _dummy_hash() -> str:
    return _HASHER.hash(secrets.token_hex(16))


def _password_matches(password_hash: str | None, password: str) -> bool:
    try:
        # An unknown account costs as much as a known one, so timing does not tell which usernames exist.
        return _HASHER.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time-step whose code `code` is, allowing one step of clock drift either way."""
    code = code.strip().replace(" ", "")
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    step = int(now.timestamp()) // totp.interval
    for candidate in (step - 1, step, step + 1):
        if hmac.compare_digest(totp.generate_otp(candidate), code):
            return candidate
    return None


_CODE_USED = "code already used"


async def _check(ctx: BrokerContext, op: OperatorRow | None, password: str, code: str, now: datetime) -> str | None:
    """None when the password and code are right; otherwise the reason, for the audit trail only."""
    if not await asyncio.to_thread(_password_matches, op.password_hash if op else None, password):
        return "unknown account" if op is None else "wrong password"
    assert op is not None  # noqa: S101 - a password never matches without an account
    if op.disabled_at is not None:
        return "account disabled"
    secret = ctx.keys.vault.decrypt(op.totp_secret_ct, bound_to=totp_bound_to(op.id)).decode()
    step = matching_step(secret, code, now)
    if step is None:
        return "wrong code"
    if not await operators.use_totp_step(ctx.pool, op.id, step):
        return _CODE_USED
    return None


async def log_in(
    ctx: BrokerContext, username: str, password: str, code: str, *, address: str, previous_session: str | None
) -> LoginResult:
    username = username.strip().lower()[:64]
    now = ctx.clock()
    pair_key, address_key = _throttle_keys(ctx, username, address)
    # The attempt is counted before anything is checked, so parallel requests cannot all pass a limit
    # they read before any of them was counted. Only when both counters had room does the check run.
    limits = {pair_key: ctx.settings.ops_login_attempts, address_key: ctx.settings.ops_login_attempts_per_address}
    counted = await operators.reserve_attempt(ctx.pool, limits, now, now + LOGIN_WINDOW)
    if counted != set(limits):
        await operators.give_back(ctx.pool, list(counted), now)
        return LoginResult(LoginOutcome.THROTTLED)
    op = await operators.by_username(ctx.pool, username)
    reason = await _check(ctx, op, password, code, now)
    async with ctx.pool.acquire() as conn, conn.transaction():
        if reason is not None:
            # The failure was counted already, when the attempt was let through.
            # An unknown username is not recorded: people type their password into that field.
            await audit.append(
                conn,
                at=now,
                actor=f"operator:{op.username}" if op else "anonymous",
                action="operator.login_failed",
                subject=op.username if op else None,
                details={"reason": reason},
            )
            used = reason == _CODE_USED
            return LoginResult(LoginOutcome.CODE_USED if used else LoginOutcome.REFUSED)
        assert op is not None  # noqa: S101 - no reason means the account exists
        if previous_session:
            # Rotation: whatever session the browser held before is ended, and a fresh id is issued.
            await operators.end_session(conn, token_hash(previous_session), now)
        session_id = secrets.token_urlsafe(32)  # 256 bits from the OS's CSPRNG
        await operators.insert_session(conn, token_hash(session_id), op.id, now)
        # A success forgives this account's failures from here, and is no failure of the address.
        await operators.clear_failures(conn, pair_key)
        await operators.give_back(conn, [address_key], now)
        await audit.append(conn, at=now, actor=f"operator:{op.username}", action="operator.login", subject=op.username)
    if _HASHER.check_needs_rehash(op.password_hash):
        await operators.update_password_hash(ctx.pool, op.id, await asyncio.to_thread(_HASHER.hash, password))
    return LoginResult(LoginOutcome.SIGNED_IN, session_id)


async def signed_in(ctx: BrokerContext, session_id: str | None) -> SignedIn | None:
    """The operator behind a session cookie, or None; an idle or too old session is ended here."""
    if not session_id or len(session_id) > 128:
        return None
    session_hash = token_hash(session_id)
    row = await operators.session(ctx.pool, session_hash)
    if row is None or row.ended_at is not None or row.operator_disabled_at is not None:
        return None
    now = ctx.clock()
    idle_ends = row.last_seen_at + timedelta(minutes=ctx.settings.ops_idle_minutes)
    absolute_ends = row.created_at + timedelta(hours=ctx.settings.ops_session_hours)
    if now >= idle_ends or now >= absolute_ends:
        await operators.end_session(ctx.pool, session_hash, now)
        return None
    await operators.touch_session(ctx.pool, session_hash, now)
    expires = min(now + timedelta(minutes=ctx.settings.ops_idle_minutes), absolute_ends)
    return SignedIn(row.username, Role(row.role), session_hash, expires)


async def log_out(ctx: BrokerContext, who: SignedIn) -> None:
    now = ctx.clock()
    async with ctx.pool.acquire() as conn, conn.transaction():
        if await operators.end_session(conn, who.session_hash, now):
            await audit.append(
                conn, at=now, actor=f"operator:{who.username}", action="operator.logout", subject=who.username
            )


async def forget_old_sign_ins(ctx: BrokerContext) -> int:
    """Delete sessions and failed-login counters that can no longer matter."""
    now = ctx.clock()
    horizon = now - timedelta(hours=ctx.settings.ops_session_hours)
    return await operators.forget_sessions_before(ctx.pool, horizon) + await operators.forget_failures_before(
        ctx.pool, now - timedelta(minutes=1)
    )
