"""One-time codes: sent to the address the patient typed, whether or not anything is linked to it.

Limits: a few codes per address per hour (counted in the statement that stores the code), five tries
per code (counted before the code is compared), a short life. The right code opens a session.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import uuid
from datetime import datetime, timedelta

from referral_broker.services.context import BrokerContext
from referral_broker.services.ports import CodeNotSent, CodeSender
from referral_broker.services.rights.sessions import RightsSession, code_bound_to, open_session
from referral_broker.store import audit
from referral_broker.store import rights as rights_store
from referral_protocol.contact import ContactInvalid, normalise_email, normalise_phone
from referral_protocol.errors import DomainError, FieldError, InvalidRequest

log = logging.getLogger(__name__)

CHANNELS = ("email", "phone")
CODE_DIGITS = 6
MAX_CODE_ATTEMPTS = 5


class TooManyCodes(DomainError):
    """Enough codes went to this address lately; wait before asking again."""


class CodeRefused(DomainError):
    """The code is wrong (`spent` False: tries are left, check the digits), or it can no longer open anything
    (`spent` True: used, expired, out of tries, or unknown; ask for a new one)."""

    def __init__(self, message: str, *, spent: bool) -> None:
        super().__init__(message)
        self.spent = spent


async def _audit(
    ctx: BrokerContext,
    now: datetime,
    *,
    action: str,
    subject: str | None = None,
    details: dict[str, object] | None = None,
) -> None:
    async with ctx.pool.acquire() as conn, conn.transaction():
        await audit.append(conn, at=now, actor="patient", action=action, subject=subject, details=details or {})


def normalised_contact(channel: str, value: str) -> str:
    """The form the blind index was made from at intake; InvalidRequest names the field otherwise."""
    if channel not in CHANNELS:
        raise InvalidRequest([FieldError("channel", "invalid", "choose e-mail or phone")])
    try:
        if channel == "email":
            return normalise_email(value).lower()
        return normalise_phone(value)
    except ContactInvalid as exc:
        raise InvalidRequest([FieldError(channel, "invalid", str(exc))]) from None


def _code_hashes(ctx: BrokerContext, code_id: uuid.UUID, code: str) -> list[bytes]:
    """The code's hash under each readable data key, current first: a code sent just before a rotation still
    opens. (Its per-address limit, counted by the address's index, starts afresh under a new key.)"""
    return ctx.keys.vault.blind_indexes("rights-code", f"{code_id}:{code}")


async def request_code(ctx: BrokerContext, sender: CodeSender, channel: str, value: str) -> uuid.UUID:
    """Send a code to the address; return the id the code is checked against. Nothing is kept if sending fails."""
    destination = normalised_contact(channel, value)
    bidx = ctx.keys.vault.blind_index(channel, destination)
    now = ctx.clock()
    settings = ctx.settings
    code_id = uuid.uuid4()
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    async with ctx.pool.acquire() as conn:
        stored = await rights_store.insert_code_within_limit(
            conn,
            id=code_id,
            channel=channel,
            contact_bidx=bidx,
            contact_ct=ctx.keys.vault.encrypt(destination.encode(), bound_to=code_bound_to(code_id)),
            code_hash=_code_hashes(ctx, code_id, code)[0],
            now=now,
            expires_at=now + timedelta(minutes=settings.rights_code_minutes),
            counted_since=now - timedelta(hours=1),
            limit=settings.rights_codes_per_hour,
        )
    if not stored:
        await _audit(ctx, now, action="rights.code_limited", details={"channel": channel})
        raise TooManyCodes("too many codes were sent to this address in the last hour; try again later")
    try:
        await sender.send(channel, destination, code, settings.rights_code_minutes)
    except CodeNotSent as exc:
        await rights_store.delete_code(ctx.pool, code_id)
        await _audit(
            ctx,
            now,
            action="rights.code_not_sent",
            subject=str(code_id),
            details={"channel": channel, "reason": exc.reason},
        )
        log.warning("a one-time code by %s could not be sent: %s", channel, exc.reason)
        raise
    await _audit(ctx, now, action="rights.code_sent", subject=str(code_id), details={"channel": channel})
    return code_id


async def verify_code(ctx: BrokerContext, code_id: str, code: str) -> tuple[str, RightsSession]:
    """Check a code; the right one opens a session and returns its token (shown once, stored hashed)."""
    try:
        row_id = uuid.UUID(code_id)
    except ValueError:
        raise CodeRefused("this code is no longer valid; ask for a new one", spent=True) from None
    code = code.strip().replace(" ", "")
    now = ctx.clock()
    spent = True
    async with ctx.pool.acquire() as conn, conn.transaction():
        # The try is counted before the code is compared, in the one statement that checks it may be tried.
        row = await rights_store.take_attempt(conn, row_id, now, MAX_CODE_ATTEMPTS)
        if row is None:
            outcome = "lapsed" if await rights_store.code_exists(conn, row_id) else "unknown"
        else:
            right = len(code) == CODE_DIGITS and any(
                hmac.compare_digest(h, row.code_hash) for h in _code_hashes(ctx, row.id, code)
            )
            outcome = "opened" if right else "wrong"
            # The fifth wrong try uses the code up: the right digits after it would be refused too.
            spent = not right and row.attempts >= MAX_CODE_ATTEMPTS
        if outcome == "opened" and row is not None:
            token, session = await open_session(ctx, conn, row, now)
            await audit.append(conn, at=now, actor="patient", action="rights.session_opened", subject=str(row.id))
            return token, session
        if outcome != "unknown":
            await audit.append(
                conn,
                at=now,
                actor="patient",
                action="rights.code_refused",
                subject=str(row_id),
                details={"why": outcome},
            )
    if spent:
        raise CodeRefused("this code is used up or no longer valid; ask for a new one", spent=True)
    raise CodeRefused("this code is wrong; check the digits and try again", spent=False)
