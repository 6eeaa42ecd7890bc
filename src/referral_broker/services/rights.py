"""The patient's rights without the manage link (GDPR art. 7(3), 15–20), through their contact details.

1. A code: the patient types an e-mail address or phone number; a six-digit code goes there. The
   same thing happens whether or not anything is linked to it, so the page tells no one whether an
   address has referrals. Limits: a few codes per address per hour, five tries per code, a short life.
2. A session: the right code opens a short session (only its hash is stored) bound to the blind
   index of that address, so it reaches exactly the referrals submitted with it.
3. What a session may do, each per referral and each in one transaction with its audit event:
   see (metadata, never content), export everything held as JSON (access and portability), correct
   the contact details (rectification), erase now, withdraw consent. Clinics that received the
   referral are told by a sealed notice (art. 19).

Erasure keeps what the law asks of a controller that must show what it did: that a referral was
forwarded to which clinics on which day and was erased on which day, with no person in it — the same
anonymous remainder the five-month anonymisation leaves, plus the day of erasure.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import msgspec

from referral_broker.crypto.contact import ContactDecryptionFailed
from referral_broker.crypto.tokens import token_hash
from referral_broker.domain.contact import ContactInvalid, age_on, normalise_email, normalise_phone
from referral_broker.domain.errors import DomainError, FieldError, InvalidRequest
from referral_broker.domain.notice import NoticeKind
from referral_broker.domain.referral import OLDEST_PLAUSIBLE_AGE, ContactCopy, Patient
from referral_broker.domain.retention import LOCAL_TIME, months_after
from referral_broker.services import clinic_notices, manage, retention
from referral_broker.services.context import BrokerContext
from referral_broker.services.ports import CodeNotSent, CodeSender
from referral_broker.store import audit, notices, rights
from referral_broker.store import referrals as referral_store
from referral_broker.store import retention as retention_store
from referral_broker.store.notices import NoticeView
from referral_broker.store.referrals import DeliveryView

log = logging.getLogger(__name__)

CHANNELS = ("email", "phone")
CODE_DIGITS = 6
MAX_CODE_ATTEMPTS = 5
_encode = msgspec.json.Encoder().encode


class TooManyCodes(DomainError):
    """Enough codes went to this address lately; wait before asking again."""


class CodeRefused(DomainError):
    """The code is wrong, used, expired or tried too often. One message for all: ask for a new one."""


class NotLinked(DomainError):
    """No referral with this reference is linked to the contact detail of this session."""

    def __init__(self) -> None:
        super().__init__("no request with this reference is linked to the address you confirmed")


@dataclass(frozen=True)
class RightsSession:
    code_id: uuid.UUID
    channel: str
    contact_bidx: bytes
    expires_at: datetime


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


# --- codes and sessions ---------------------------------------------------------------------------


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


def _code_hash(ctx: BrokerContext, code_id: uuid.UUID, code: str) -> bytes:
    return ctx.keys.vault.blind_index("rights-code", f"{code_id}:{code}")


async def request_code(ctx: BrokerContext, sender: CodeSender, channel: str, value: str) -> uuid.UUID:
    """Send a code to the address; return the id the code is checked against. Nothing is kept if sending fails."""
    destination = normalised_contact(channel, value)
    bidx = ctx.keys.vault.blind_index(channel, destination)
    now = ctx.clock()
    settings = ctx.settings
    code_id = uuid.uuid4()
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    async with ctx.pool.acquire() as conn:
        stored = await rights.insert_code_within_limit(
            conn,
            id=code_id,
            channel=channel,
            contact_bidx=bidx,
            code_hash=_code_hash(ctx, code_id, code),
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
        await rights.delete_code(ctx.pool, code_id)
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
        raise CodeRefused("this code is wrong or no longer valid; ask for a new one") from None
    code = code.strip().replace(" ", "")
    now = ctx.clock()
    async with ctx.pool.acquire() as conn, conn.transaction():
        # The try is counted before the code is compared, in the one statement that checks it may be tried.
        row = await rights.take_attempt(conn, row_id, now, MAX_CODE_ATTEMPTS)
        if row is None:
            outcome = "lapsed" if await rights.code_exists(conn, row_id) else "unknown"
        else:
            right = len(code) == CODE_DIGITS and hmac.compare_digest(_code_hash(ctx, row.id, code), row.code_hash)
            outcome = "opened" if right else "wrong"
        if outcome == "opened" and row is not None:
            token = secrets.token_urlsafe(32)
            expires = now + timedelta(minutes=ctx.settings.rights_session_minutes)
            await rights.open_session(conn, row.id, session_hash=token_hash(token), now=now, expires_at=expires)
            await audit.append(conn, at=now, actor="patient", action="rights.session_opened", subject=str(row.id))
            return token, RightsSession(row.id, row.channel, row.contact_bidx, expires)
        if outcome != "unknown":
            await audit.append(
                conn,
                at=now,
                actor="patient",
                action="rights.code_refused",
                subject=str(row_id),
                details={"why": outcome},
            )
    raise CodeRefused("this code is wrong or no longer valid; ask for a new one")


async def session_of(ctx: BrokerContext, token: str | None) -> RightsSession | None:
    if not token or len(token) > 100:
        return None
    row = await rights.session(ctx.pool, token_hash(token), ctx.clock())
    return RightsSession(row.code_id, row.channel, row.contact_bidx, row.expires_at) if row else None


async def end_session(ctx: BrokerContext, token: str | None) -> None:
    if token and len(token) <= 100:
        await rights.end_session(ctx.pool, token_hash(token), ctx.clock())


# --- what a session sees --------------------------------------------------------------------------


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


async def overview(ctx: BrokerContext, session: RightsSession) -> list[LinkedView]:
    linked = await rights.linked_referrals(ctx.pool, session.channel, session.contact_bidx)
    return [await _view(ctx, r) for r in linked]


async def _view(ctx: BrokerContext, r: rights.LinkedReferral) -> LinkedView:
    return LinkedView(
        id=r.id,
        reference=r.reference,
        submitted_at=r.created_at,
        withdrawn_at=r.withdrawn_at,
        contact=_contact(ctx, r.id, r.contact_ct),
        consent_version=r.consent_version,
        consent_text_sha256=r.consent_text_sha256,
        consent_at=r.consent_at,
        deliveries=await referral_store.deliveries_of(ctx.pool, r.id),
        notices=await notices.of_referral(ctx.pool, r.id),
        kept_until=months_after(r.retention_anchor or r.created_at, ctx.settings.retention_months),
    )


def _contact(ctx: BrokerContext, referral_id: uuid.UUID, ciphertext: bytes) -> ContactCopy | None:
    try:
        return msgspec.json.decode(ctx.keys.vault.decrypt(ciphertext, bound_to=referral_id.bytes), type=ContactCopy)
    except (ContactDecryptionFailed, msgspec.DecodeError, msgspec.ValidationError):
        log.warning("the stored copy of referral %s does not decrypt", referral_id)
        return None


async def find(ctx: BrokerContext, session: RightsSession, reference: str) -> LinkedView:
    """One linked referral's view; only that one is decrypted and looked up further."""
    for r in await rights.linked_referrals(ctx.pool, session.channel, session.contact_bidx):
        if r.reference == reference:
            return await _view(ctx, r)
    raise NotLinked


# --- access and portability (art. 15, 20) ---------------------------------------------------------

EXPORT_FORMAT = "referral-broker/subject-access/v1"

EXPLANATION = {
    "nb": (
        "Dette er alt henvisningsformidleren har om deg knyttet til adressen du bekreftet. Det du skrev om "
        "hva du trenger hjelp til, ble kryptert til klinikkene du valgte før det ble lagret; formidleren "
        "kan ikke lese det og kan derfor ikke ta det med her. Kontaktopplysningene dine lagres kryptert og "
        "anonymiseres fem måneder etter at henvisningen ble sendt. Klinikkene har sin egen kopi av det de "
        "mottok; spør dem om den."
    ),
    "en": (
        "This is everything the referral broker holds about you linked to the address you confirmed. What "
        "you wrote about what you need help with was encrypted to the clinics you chose before it was stored; "
        "the broker cannot read it and so cannot include it here. Your contact details are stored encrypted "
        "and anonymised five months after the referral was sent. The clinics hold their own copy of what "
        "they received; ask them for it."
    ),
}


class ExportedDelivery(msgspec.Struct):
    clinic: str
    clinic_name: str
    status: str
    created_at: datetime
    made_available_at: datetime | None
    received_by_clinic_at: datetime | None


class ExportedNotice(msgspec.Struct):
    clinic_delivery: str
    kind: str
    status: str
    created_at: datetime
    received_by_clinic_at: datetime | None


class ExportedConsent(msgspec.Struct):
    version: str
    text_sha256: str
    given_at: datetime
    withdrawn_at: datetime | None


class ExportedReferral(msgspec.Struct):
    reference: str
    submitted_at: datetime
    contact_details: ContactCopy | None
    consent: ExportedConsent
    deliveries: list[ExportedDelivery]
    notices_to_clinics: list[ExportedNotice]
    anonymised_after: date


class SubjectAccessExport(msgspec.Struct):
    format: str
    generated_at: datetime
    looked_up_by: str
    explanation: dict[str, str]
    referrals: list[ExportedReferral]


async def export(ctx: BrokerContext, session: RightsSession) -> bytes:
    views = await overview(ctx, session)
    now = ctx.clock()
    document = SubjectAccessExport(
        format=EXPORT_FORMAT,
        generated_at=now,
        looked_up_by=session.channel,
        explanation=EXPLANATION,
        referrals=[
            ExportedReferral(
                reference=v.reference,
                submitted_at=v.submitted_at,
                contact_details=v.contact,
                consent=ExportedConsent(v.consent_version, v.consent_text_sha256, v.consent_at, v.withdrawn_at),
                deliveries=[
                    ExportedDelivery(
                        d.clinic_slug, d.clinic_name, d.status, d.created_at, d.dispatched_at, d.acknowledged_at
                    )
                    for d in v.deliveries
                ],
                notices_to_clinics=[
                    ExportedNotice(str(n.delivery_id), n.kind, n.status, n.created_at, n.acknowledged_at)
                    for n in v.notices
                ],
                anonymised_after=v.kept_until.astimezone(LOCAL_TIME).date(),
            )
            for v in views
        ],
    )
    await _audit(
        ctx,
        now,
        action="rights.exported",
        subject=str(session.code_id),
        details={"referrals": [str(v.id) for v in views]},
    )
    return msgspec.json.format(_encode(document), indent=2)


# --- rectification (art. 16) ----------------------------------------------------------------------


def check_correction(name: str, email: str, phone: str, birth_date: date, *, today: date) -> Patient:
    errors: list[FieldError] = []
    name = name.strip()
    if not name or len(name) > 200 or any(ord(c) < 32 for c in name):
        errors.append(FieldError("name", "invalid", "write your full name"))
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


async def rectify(ctx: BrokerContext, session: RightsSession, reference: str, corrected: Patient) -> Rectified:
    """Replace the broker's copy and blind indexes; tell every clinic that has or will get the referral."""
    now = ctx.clock()
    vault = ctx.keys.vault
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await rights.lock_linked(conn, session.channel, session.contact_bidx, reference)
        if row is None:
            raise NotLinked
        before = _contact(ctx, row.id, row.contact_ct)
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
        await rights.update_contact(
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
            deliveries=await referral_store.deliveries_of(conn, row.id),
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
    still = (email_bidx if session.channel == "email" else phone_bidx) == session.contact_bidx
    return Rectified(changed, len(planned.sealed), still)


# --- withdrawal (art. 7(3)) and erasure (art. 17) -------------------------------------------------


@dataclass(frozen=True)
class Stopped:
    cancelled: int  # deliveries stopped before the clinic received them
    notices: int  # clinics told


async def withdraw(ctx: BrokerContext, session: RightsSession, reference: str) -> Stopped:
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await rights.lock_linked(conn, session.channel, session.contact_bidx, reference)
        if row is None:
            raise NotLinked
        done = await manage.withdraw_locked(
            ctx, conn, row.id, reference, first_time=row.withdrawn_at is None, actor="patient:rights"
        )
    await clinic_notices.ring(ctx, done.planned)
    return Stopped(len(done.cancelled), len(done.planned.sealed))


async def erase(ctx: BrokerContext, session: RightsSession, reference: str) -> Stopped:
    """Erase now: stop what is undelivered, anonymise at once, tell the clinics. One transaction."""
    now = ctx.clock()
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await rights.lock_linked(conn, session.channel, session.contact_bidx, reference)
        if row is None:
            raise NotLinked
        deliveries = await referral_store.deliveries_of(conn, row.id)
        cancelled = await referral_store.cancel_undelivered(conn, row.id, now)
        # Unserved notices about this referral may hold the old contact details: they go with it.
        # Also expires unserved notices about it: they may hold the old contact details.
        category = retention.surviving_category(ctx, row.id.bytes, row.contact_ct)
        await retention_store.anonymise(conn, [row.id], [category], now)
        await rights.mark_erased(conn, row.id, now)
        planned = await clinic_notices.seal_notices(
            ctx, conn, kind=NoticeKind.ERASURE, reference=reference, deliveries=deliveries, requested_at=now
        )
        await audit.append(
            conn,
            at=now,
            actor="patient",
            action="rights.erased",
            subject=str(row.id),
            details={
                "cancelled": [str(i) for i in cancelled],
                "notices": len(planned.sealed),
                "unsealable": planned.unsealable,
            },
        )
    await clinic_notices.ring(ctx, planned)
    return Stopped(len(cancelled), len(planned.sealed))
