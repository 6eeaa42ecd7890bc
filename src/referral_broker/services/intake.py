"""Intake: a patient's request is checked, sealed to each chosen clinic, and stored with its outbox row.

The plaintext exists only in this function's memory: it is sealed before anything is written, the
broker's contact copy is AEAD-encrypted, and the job that follows carries only the referral's id.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

import msgspec

from referral_broker.crypto.contact import DataKey
from referral_broker.crypto.tokens import token_hash
from referral_broker.domain.ids import new_id
from referral_broker.domain.keys import ClinicStatus
from referral_broker.domain.reference import new_reference
from referral_broker.services.context import BrokerContext
from referral_broker.services.ports import JOB_DISPATCH
from referral_broker.store import clinics as clinic_store
from referral_broker.store import referrals as referral_store
from referral_protocol import envelope
from referral_protocol.consent import CONSENT_VERSION, consent_text_sha256
from referral_protocol.errors import FieldError, InvalidRequest
from referral_protocol.referral import (
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

log = logging.getLogger(__name__)

NORWAY = ZoneInfo("Europe/Oslo")
_encode = msgspec.json.Encoder().encode


IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9._:-]{16,200}$")


async def submit(ctx: BrokerContext, request: ReferralRequest) -> Receipt:
    """Accept a referral or raise InvalidRequest naming every field that is wrong; nothing is stored then."""
    receipt, _ = await submit_once(ctx, request, idempotency_key=None)
    return receipt


async def submit_once(
    ctx: BrokerContext, request: ReferralRequest, *, idempotency_key: str | None
) -> tuple[Receipt, bool]:
    """Like `submit`, but a repeat with the same idempotency key returns the first receipt, and True.

    With a key, the manage token is derived from the key *and the whole request* with the broker's
    HMAC key (never stored), so an identical repeat's receipt carries the same private link and the
    referral is not created twice, even when repeats race. Binding the request in means the key alone
    is no capability: someone who learns it but not everything the patient typed gets nothing back.
    The same key with a different request is simply another request. Without a key the token is random.
    """
    if idempotency_key is not None:
        if not IDEMPOTENCY_KEY.match(idempotency_key):
            raise InvalidRequest([FieldError("Idempotency-Key", "invalid", "use 16 to 200 letters, digits or . _ : -")])
        idempotency_key = _bound_to_request(idempotency_key, request)
        earlier = await _earlier_receipt(ctx, idempotency_key)
        if earlier is not None:
            return earlier, True
    try:
        return await _accept(ctx, request, idempotency_key), False
    except referral_store.AlreadySubmitted:
        assert idempotency_key is not None  # noqa: S101 - only a keyed insert can conflict this way
        raced = await _earlier_receipt(ctx, idempotency_key)
        if raced is None:  # pragma: no cover - the conflicting row committed before we looked
            raise
        return raced, True


async def earlier_receipt(ctx: BrokerContext, request: ReferralRequest, *, idempotency_key: str) -> Receipt | None:
    """The receipt of an earlier identical submission under this key, or None; creates nothing, so it may be
    answered even to a client past its submission limit (a repeat is not a new referral)."""
    if not IDEMPOTENCY_KEY.match(idempotency_key):
        return None
    return await _earlier_receipt(ctx, _bound_to_request(idempotency_key, request))


def _bound_to_request(key: str, request: ReferralRequest) -> str:
    return key + "\x00" + _encode(request).decode()


def _idempotency_hash(data_key: DataKey, key: str) -> bytes:
    return data_key.blind_index("idempotency", key)


def _keyed_manage_token(data_key: DataKey, key: str) -> str:
    return base64.urlsafe_b64encode(data_key.blind_index("manage-token", key)).rstrip(b"=").decode()


async def _earlier_receipt(ctx: BrokerContext, key: str) -> Receipt | None:
    # Under every readable data key: a repeat during a data-key rotation finds the first submission, and its
    # manage token is derived again under the key that made it (docs/decisions/0070).
    for data_key in ctx.keys.vault.readable:
        earlier = await referral_store.by_idempotency_hash(ctx.pool, _idempotency_hash(data_key, key))
        if earlier is not None:
            break
    else:
        return None
    deliveries = await referral_store.deliveries_of(ctx.pool, earlier.id)
    return Receipt(
        reference=earlier.reference,
        manage_url=f"{ctx.settings.public_url}/manage/{_keyed_manage_token(data_key, key)}",
        submitted_at=earlier.created_at,
        deliveries=[DeliverySummary(clinic=d.clinic_slug, status=d.status) for d in deliveries],
    )


#: A first try from what this process knew of the clinics, then two from what the database says now.
_SEALING_TRIES = 3


async def _accept(ctx: BrokerContext, request: ReferralRequest, idempotency_key: str | None) -> Receipt:
    now = ctx.clock()
    errors: list[FieldError] = []
    checked: CheckedReferral | None = None
    try:
        checked = check_request(request, today=now.astimezone(NORWAY).date(), minimum_age=ctx.settings.minimum_age)
    except InvalidRequest as exc:
        errors.extend(exc.errors)
    slugs = list(request.clinics)
    targets = await ctx.sealing_targets.read(ctx.pool, slugs)
    errors.extend(_clinic_errors(slugs, targets))
    if errors or checked is None:
        raise InvalidRequest(errors)

    referral_id = new_id(now)
    # 256 bits either way; only its hash is stored
    token = (
        _keyed_manage_token(ctx.keys.vault.current, idempotency_key) if idempotency_key else secrets.token_urlsafe(32)
    )
    for _ in range(_SEALING_TRIES):
        try:
            reference = await _store(ctx, checked, targets, referral_id, token, idempotency_key, now)
            break
        except referral_store.ClinicsChanged:
            # A chosen clinic was suspended, or its keys rotated or revoked, since this process read them.
            targets = await ctx.sealing_targets.read(ctx.pool, slugs, again=True)
            if errors := _clinic_errors(slugs, targets):
                raise InvalidRequest(errors) from None
    else:  # pragma: no cover - the keys changed again between each read and the insert after it
        raise RuntimeError("the chosen clinics' keys kept changing while the referral was sealed")

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


def _clinic_errors(slugs: list[str], targets: dict[str, clinic_store.SealingTarget]) -> list[FieldError]:
    errors = []
    for i, slug in enumerate(slugs):
        target = targets.get(slug)
        if target is None:
            errors.append(FieldError(f"clinics[{i}]", "unknown", f"there is no clinic called {slug!r}"))
        elif target.status != ClinicStatus.ACTIVE or not target.encryption_keys:
            errors.append(FieldError(f"clinics[{i}]", "unavailable", f"{slug!r} cannot receive requests now"))
    return errors


async def _store(
    ctx: BrokerContext,
    checked: CheckedReferral,
    targets: dict[str, clinic_store.SealingTarget],
    referral_id: uuid.UUID,
    token: str,
    idempotency_key: str | None,
    now: datetime,
) -> str:
    """Seal to the targets and store, under a fresh reference; returns the reference."""
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
            manage_token_hash=token_hash(token),
            idempotency_hash=_idempotency_hash(vault.current, idempotency_key) if idempotency_key else None,
            deliveries=[_seal_for(ctx, checked, targets[slug], reference, consent) for slug in checked.clinics],
        )
        try:
            await referral_store.insert_referral(ctx.pool, new, dispatch_job=JOB_DISPATCH)
            return reference
        except referral_store.ReferenceTaken:
            continue
    raise RuntimeError("could not draw an unused reference")  # pragma: no cover - 50 random bits, five times


def _seal_for(
    ctx: BrokerContext,
    checked: CheckedReferral,
    target: clinic_store.SealingTarget,
    reference: str,
    consent: SealedConsent,
) -> referral_store.NewDelivery:
    delivery_id = new_id(consent.accepted_at)
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
