"""Intake: a patient's request is checked, sealed to each chosen clinic, and stored with its outbox row.

The plaintext exists only in this function's memory: it is sealed before anything is written, the
broker's contact copy is AEAD-encrypted, and the job that follows carries only the referral's id.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from zoneinfo import ZoneInfo

import msgspec

from referral_broker.crypto import envelope
from referral_broker.domain.consent import CONSENT_VERSION, consent_text_sha256
from referral_broker.domain.errors import FieldError, InvalidRequest
from referral_broker.domain.keys import ClinicStatus
from referral_broker.domain.reference import new_reference
from referral_broker.domain.referral import (
    REFERRAL_PAYLOAD_FORMAT,
    CheckedReferral,
    ContactCopy,
    DeliverySummary,
    Receipt,
    ReferralPayload,
    ReferralRequest,
    SealedConsent,
    check_request,
)
from referral_broker.services.context import BrokerContext
from referral_broker.services.ports import JOB_DISPATCH
from referral_broker.store import clinics as clinic_store
from referral_broker.store import referrals as referral_store

log = logging.getLogger(__name__)

NORWAY = ZoneInfo("Europe/Oslo")
_encode = msgspec.json.Encoder().encode


def manage_token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def submit(ctx: BrokerContext, request: ReferralRequest) -> Receipt:
    """Accept a referral or raise InvalidRequest naming every field that is wrong; nothing is stored then."""
    now = ctx.clock()
    errors: list[FieldError] = []
    checked: CheckedReferral | None = None
    try:
        checked = check_request(request, today=now.astimezone(NORWAY).date(), minimum_age=ctx.settings.minimum_age)
    except InvalidRequest as exc:
        errors.extend(exc.errors)
    targets = {t.slug: t for t in await clinic_store.sealing_targets(ctx.pool, list(request.clinics))}
    for i, slug in enumerate(request.clinics):
        target = targets.get(slug)
        if target is None:
            errors.append(FieldError(f"clinics[{i}]", "unknown", f"there is no clinic called {slug!r}"))
        elif target.status != ClinicStatus.ACTIVE or not target.encryption_keys:
            errors.append(FieldError(f"clinics[{i}]", "unavailable", f"{slug!r} cannot receive requests now"))
    if errors or checked is None:
        raise InvalidRequest(errors)

    referral_id = uuid.uuid4()
    token = secrets.token_urlsafe(32)  # 256 bits; only its hash is stored
    vault = ctx.keys.vault
    contact = ContactCopy(
        name=checked.patient.name,
        email=checked.patient.email,
        phone=checked.patient.phone,
        birth_date=checked.patient.birth_date,
        category=checked.need.category,
    )
    consent = SealedConsent(version=CONSENT_VERSION, accepted_at=now, text_sha256=consent_text_sha256())
    for _ in range(5):
        reference = new_reference()
        new = referral_store.NewReferral(
            id=referral_id,
            reference=reference,
            created_at=now,
            consent_version=consent.version,
            consent_text_sha256=consent.text_sha256,
            contact_ct=vault.encrypt(_encode(contact), bound_to=referral_id.bytes),
            email_bidx=vault.blind_index("email", checked.patient.email.lower()),
            phone_bidx=vault.blind_index("phone", checked.patient.phone),
            manage_token_hash=manage_token_hash(token),
            deliveries=[_seal_for(ctx, checked, targets[slug], reference, consent, now) for slug in checked.clinics],
        )
        try:
            await referral_store.insert_referral(ctx.pool, new, dispatch_job=JOB_DISPATCH)
            break
        except referral_store.ReferenceTaken:
            continue
    else:  # pragma: no cover - five collisions of 50 random bits do not happen
        raise RuntimeError("could not draw an unused reference")

    try:
        await ctx.doorbell.ring(JOB_DISPATCH, referral_id)
    except Exception:  # the outbox row is committed; the reconciler will ring again
        log.warning("could not enqueue dispatch of referral %s; the reconciler will", referral_id, exc_info=True)
    return Receipt(
        reference=reference,
        manage_url=f"{ctx.settings.public_url}/manage/{token}",
        submitted_at=now,
        deliveries=[DeliverySummary(clinic=slug, status="queued") for slug in checked.clinics],
    )


def _seal_for(
    ctx: BrokerContext,
    checked: CheckedReferral,
    target: clinic_store.SealingTarget,
    reference: str,
    consent: SealedConsent,
    now: object,
) -> referral_store.NewDelivery:
    delivery_id = uuid.uuid4()
    payload = ReferralPayload(
        format=REFERRAL_PAYLOAD_FORMAT,
        delivery_id=str(delivery_id),
        reference=reference,
        clinic=target.slug,
        submitted_at=consent.accepted_at,
        patient=checked.patient,
        need=checked.need,
        consent=consent,
    )
    sealed = envelope.seal(
        _encode(payload),
        kind="referral",
        delivery_id=str(delivery_id),
        reference=reference,
        clinic=target.slug,
        issued_at=consent.accepted_at,
        recipient_keys=target.encryption_keys,
        signer=ctx.keys.signer,
    )
    return referral_store.NewDelivery(
        id=delivery_id,
        clinic_id=target.id,
        envelope=sealed.data,
        envelope_sha256=hashlib.sha256(sealed.data).digest(),
        recipient_keys=[r.key_id for r in sealed.body.recipients],
    )
