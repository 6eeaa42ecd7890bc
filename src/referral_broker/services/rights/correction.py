"""Rectification (GDPR art. 16): the patient corrects their contact details; the broker's copy and blind
indexes are replaced, and every clinic that has or will get the referral is told by a sealed notice."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import msgspec

from referral_broker.services import clinic_notices
from referral_broker.services.context import BrokerContext
from referral_broker.services.rights import linked
from referral_broker.services.rights.sessions import RightsSession
from referral_broker.store import audit
from referral_broker.store import referrals as referral_store
from referral_broker.store import rights as rights_store
from referral_protocol.contact import ContactInvalid, age_on, normalise_email, normalise_phone
from referral_protocol.errors import FieldError, InvalidRequest
from referral_protocol.notice import NoticeKind
from referral_protocol.referral import (
    CONTROL_CHARACTERS,
    NAME_CONTROL_CHARACTERS,
    OLDEST_PLAUSIBLE_AGE,
    ContactCopy,
    Patient,
)
from referral_protocol.validation import has_control_characters

_encode = msgspec.json.Encoder().encode


def check_correction(name: str, email: str, phone: str, birth_date: date, *, today: date) -> Patient:
    errors: list[FieldError] = []
    name = name.strip()
    if not name or len(name) > 200:
        errors.append(FieldError("name", "invalid", "write your full name"))
    elif has_control_characters(name, multiline=False):
        errors.append(FieldError("name", CONTROL_CHARACTERS, NAME_CONTROL_CHARACTERS))
    try:
        email = normalise_email(email)
    except ContactInvalid as exc:
        errors.append(FieldError("email", "invalid", str(exc)))
    try:
        phone = normalise_phone(phone)
    except ContactInvalid as exc:
        errors.append(FieldError("phone", "invalid", str(exc)))
    if birth_date > today or age_on(birth_date, today) > OLDEST_PLAUSIBLE_AGE:
        errors.append(FieldError("birth_date", "invalid", "this birth date is not possible"))
    if errors:
        raise InvalidRequest(errors)
    return Patient(name=name, email=email, phone=phone, birth_date=birth_date)


@dataclass(frozen=True)
class Rectified:
    changed: list[str]  # field names, never values
    notices: int
    still_linked: bool  # False when the address this session confirmed was itself changed
    reach: clinic_notices.Reach = field(default_factory=clinic_notices.Reach)  # who was told, by name


async def rectify(ctx: BrokerContext, session: RightsSession, reference: str, corrected: Patient) -> Rectified:
    """Replace the broker's copy and blind indexes; tell every clinic that has or will get the referral."""
    now = ctx.clock()
    vault = ctx.keys.vault
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await linked.lock(conn, session, reference)
        before = linked.contact_copy(ctx, row.id, row.contact_ct)
        category = before.category if before else None
        after = ContactCopy(corrected.name, corrected.email, corrected.phone, corrected.birth_date, category)
        changed = [
            f
            for f in ("name", "email", "phone", "birth_date")
            if before is None or getattr(before, f) != getattr(after, f)
        ]
        if not changed:
            return Rectified([], 0, True)
        email_bidx = vault.blind_index("email", corrected.email.lower())
        phone_bidx = vault.blind_index("phone", corrected.phone)
        await rights_store.update_contact(
            conn,
            row.id,
            contact_ct=vault.encrypt(_encode(after), bound_to=row.id.bytes),
            email_bidx=email_bidx,
            phone_bidx=phone_bidx,
        )
        planned = await clinic_notices.seal_notices(
            ctx,
            conn,
            kind=NoticeKind.CORRECTION,
            reference=reference,
            deliveries=await referral_store.deliveries_of(conn, row.id, lock=True),  # decision 0139
            requested_at=now,
            patient=corrected,
        )
        await audit.append(
            conn,
            at=now,
            actor="patient",
            action="rights.rectified",
            subject=str(row.id),
            details={"fields": changed, "notices": len(planned.sealed), "unsealable": planned.unsealable},
        )
    await clinic_notices.ring(ctx, planned)
    still = (email_bidx if session.channel == "email" else phone_bidx) in session.contact_bidxs
    return Rectified(changed, len(planned.sealed), still, planned.reach)
