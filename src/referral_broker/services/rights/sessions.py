"""Rights sessions: what the right code opens. Only the token's hash is stored; the session is bound to
the blind index of the address the code went to, and lapses after a short while."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from referral_broker.crypto.tokens import token_hash
from referral_broker.services.context import BrokerContext
from referral_broker.store import rights as rights_store
from referral_broker.store.pool import Connection

#: Longer than any token this module hands out; anything longer is refused without a query.
_LONGEST_TOKEN = 100


@dataclass(frozen=True)
class RightsSession:
    code_id: uuid.UUID
    channel: str
    contact_bidx: bytes
    expires_at: datetime


async def open_session(
    ctx: BrokerContext, conn: Connection, code: rights_store.CodeRow, now: datetime
) -> tuple[str, RightsSession]:
    """A new session for a code just proven right; returns its token (shown once) and the session."""
    token = secrets.token_urlsafe(32)
    expires = now + timedelta(minutes=ctx.settings.rights_session_minutes)
    await rights_store.open_session(conn, code.id, session_hash=token_hash(token), now=now, expires_at=expires)
    return token, RightsSession(code.id, code.channel, code.contact_bidx, expires)


async def session_of(ctx: BrokerContext, token: str | None) -> RightsSession | None:
    if not token or len(token) > _LONGEST_TOKEN:
        return None
    row = await rights_store.session(ctx.pool, token_hash(token), ctx.clock())
    return RightsSession(row.code_id, row.channel, row.contact_bidx, row.expires_at) if row else None


async def end_session(ctx: BrokerContext, token: str | None) -> None:
    if token and len(token) <= _LONGEST_TOKEN:
        await rights_store.end_session(ctx.pool, token_hash(token), ctx.clock())
