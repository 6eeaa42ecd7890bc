"""Rights sessions: what the right code opens. Only the token's hash is stored; the session is bound to
the address the code went to (kept encrypted with the code), and lapses after a short while.

The session reaches the referrals by the address's blind index under every readable data key, computed
anew on each request, so a data-key rotation and its re-encryption job, which replace each referral's
indexes, never cut a patient off mid-session (docs/decisions/0070)."""

from __future__ import annotations

import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from referral_broker.crypto.contact import ContactDecryptionFailed
from referral_broker.crypto.tokens import token_hash
from referral_broker.services.context import BrokerContext
from referral_broker.store import rights as rights_store
from referral_broker.store.pool import Connection

log = logging.getLogger(__name__)

#: Longer than any token this module hands out; anything longer is refused without a query.
_LONGEST_TOKEN = 100


@dataclass(frozen=True)
class RightsSession:
    code_id: uuid.UUID
    channel: str
    contact_bidxs: tuple[bytes, ...]  # the address's blind index under each readable data key
    expires_at: datetime


def code_bound_to(code_id: uuid.UUID) -> bytes:
    """What a code's encrypted address is bound to: its own row, and never a referral's."""
    return b"rights-code\x00" + code_id.bytes


def _reach(
    ctx: BrokerContext, code_id: uuid.UUID, channel: str, contact_bidx: bytes, contact_ct: bytes | None
) -> tuple[bytes, ...]:
    indexes = [contact_bidx]
    if contact_ct is not None:
        try:
            address = ctx.keys.vault.decrypt(contact_ct, bound_to=code_bound_to(code_id)).decode()
        except ContactDecryptionFailed:  # e.g. a process not restarted since a rotation: the index it had
            log.warning("the address of rights code %s does not decrypt; using its stored index", code_id)
        else:
            indexes = ctx.keys.vault.blind_indexes(channel, address) + indexes
    return tuple(dict.fromkeys(indexes))


async def open_session(
    ctx: BrokerContext, conn: Connection, code: rights_store.CodeRow, now: datetime
) -> tuple[str, RightsSession]:
    """A new session for a code just proven right; returns its token (shown once) and the session."""
    token = secrets.token_urlsafe(32)
    expires = now + timedelta(minutes=ctx.settings.rights_session_minutes)
    await rights_store.open_session(conn, code.id, session_hash=token_hash(token), now=now, expires_at=expires)
    reach = _reach(ctx, code.id, code.channel, code.contact_bidx, code.contact_ct)
    return token, RightsSession(code.id, code.channel, reach, expires)


async def session_of(ctx: BrokerContext, token: str | None) -> RightsSession | None:
    if not token or len(token) > _LONGEST_TOKEN:
        return None
    row = await rights_store.session(ctx.pool, token_hash(token), ctx.clock())
    if row is None:
        return None
    reach = _reach(ctx, row.code_id, row.channel, row.contact_bidx, row.contact_ct)
    return RightsSession(row.code_id, row.channel, reach, row.expires_at)


async def end_session(ctx: BrokerContext, token: str | None) -> None:
    if token and len(token) <= _LONGEST_TOKEN:
        await rights_store.end_session(ctx.pool, token_hash(token), ctx.clock())
