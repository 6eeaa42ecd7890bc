"""The referrals a session reaches: those submitted with the address it confirmed, seen as metadata
(where each went, what happened, the patient's own details), never content."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

import msgspec

from referral_broker.crypto.contact import ContactDecryptionFailed
from referral_broker.domain.retention import months_after
from referral_broker.services.context import BrokerContext
from referral_broker.services.rights.sessions import RightsSession
from referral_broker.store import notices
from referral_broker.store import referrals as referral_store
from referral_broker.store import rights as rights_store
from referral_broker.store.notices import NoticeView
from referral_broker.store.pool import Connection
from referral_broker.store.referrals import DeliveryView
from referral_protocol.errors import DomainError
from referral_protocol.referral import ContactCopy

log = logging.getLogger(__name__)


class NotLinked(DomainError):
    """No referral with this reference is linked to the contact detail of this session."""

    def __init__(self) -> None:
        super().__init__("no request with this reference is linked to the address you confirmed")


@dataclass(frozen=True)
class LinkedView:
    """One referral as its patient may see it: their own details, where it went, what happened."""

    id: uuid.UUID
    reference: str
    submitted_at: datetime
    withdrawn_at: datetime | None
    contact: ContactCopy | None  # None: the broker's copy could not be read (damaged); said so
    consent_version: str
    consent_text_sha256: str
    consent_at: datetime
    deliveries: list[DeliveryView]
    notices: list[NoticeView]
    kept_until: datetime
    held: bool = False  # under legal hold: kept past `kept_until`, and not erased on request


async def overview(ctx: BrokerContext, session: RightsSession) -> list[LinkedView]:
    linked = await rights_store.linked_referrals(ctx.pool, session.channel, session.contact_bidxs)
    return [await _view(ctx, r) for r in linked]


async def find(ctx: BrokerContext, session: RightsSession, reference: str) -> LinkedView:
    """One linked referral's view; only that one is decrypted and looked up further."""
    for r in await rights_store.linked_referrals(ctx.pool, session.channel, session.contact_bidxs):
        if r.reference == reference:
            return await _view(ctx, r)
    raise NotLinked


async def lock(conn: Connection, session: RightsSession, reference: str) -> rights_store.LinkedReferral:
    """The linked referral with this reference, locked until the transaction ends; NotLinked otherwise."""
    row = await rights_store.lock_linked(conn, session.channel, session.contact_bidxs, reference)
    if row is None:
        raise NotLinked
    return row


async def _view(ctx: BrokerContext, r: rights_store.LinkedReferral) -> LinkedView:
    return LinkedView(
        id=r.id,
        reference=r.reference,
        submitted_at=r.created_at,
        withdrawn_at=r.withdrawn_at,
        contact=contact_copy(ctx, r.id, r.contact_ct),
        consent_version=r.consent_version,
        consent_text_sha256=r.consent_text_sha256,
        consent_at=r.consent_at,
        deliveries=await referral_store.deliveries_of(ctx.pool, r.id),
        notices=await notices.of_referral(ctx.pool, r.id),
        kept_until=months_after(r.retention_anchor or r.created_at, ctx.settings.retention_months),
        held=r.held_at is not None,
    )


def contact_copy(ctx: BrokerContext, referral_id: uuid.UUID, ciphertext: bytes) -> ContactCopy | None:
    """The broker's copy of the patient's details, or None (logged, without content) when it does not open."""
    try:
        return msgspec.json.decode(ctx.keys.vault.decrypt(ciphertext, bound_to=referral_id.bytes), type=ContactCopy)
    except (ContactDecryptionFailed, msgspec.DecodeError, msgspec.ValidationError):
        log.warning("the stored copy of referral %s does not decrypt", referral_id)
        return None
