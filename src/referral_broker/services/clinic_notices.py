"""Sealing notices to the clinics a referral went to (GDPR art. 19), inside the caller's transaction.

Who is told (decision 0139): a clinic whose copy was served (listed in an answer to its inbox) or
acknowledged. The caller passes the deliveries read with their rows locked (`deliveries_of(lock=True)`),
the lock a clinic's listing also takes, so a copy is either served before the notice is planned (and
that clinic is told) or not (and it is not told; a withdrawal or erasure then cancels that copy before
any clinic sees it).

- a withdrawal or an erasure goes to every clinic that received the copy; one that never did is not told;
- a correction is sealed for every clinic whose copy is not cancelled or expired: one that received it is
  told at once; for one that has not yet received it, the notice travels with the referral, after it in
  the same answer (decision 0140), so that clinic files the corrected details with the referral.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import msgspec

from referral_broker import texts
from referral_broker.domain.delivery import DeliveryStatus
from referral_broker.services import notifications
from referral_broker.services.context import BrokerContext
from referral_broker.store import clinics, inbox_signal, notices
from referral_broker.store.pool import Connection
from referral_broker.store.referrals import DeliveryView
from referral_protocol import envelope
from referral_protocol.notice import NOTICE_PAYLOAD_FORMAT, NoticeKind, NoticePayload
from referral_protocol.referral import Patient

_encode = msgspec.json.Encoder().encode
_GONE = frozenset({DeliveryStatus.CANCELLED.value, DeliveryStatus.EXPIRED.value})


def received(delivery: DeliveryView) -> bool:
    """Whether the clinic has (or had) its copy: served to it, or acknowledged."""
    return delivery.served_at is not None or delivery.status == DeliveryStatus.ACKNOWLEDGED.value


def told_about(kind: NoticeKind, delivery: DeliveryView) -> bool:
    """Whether a notice of this kind is sealed for this clinic."""
    if kind is NoticeKind.CORRECTION:
        return delivery.status not in _GONE
    return received(delivery)


@dataclass(frozen=True)
class Reach:
    """Which clinics a notice reaches, by name, as the patient's pages say it."""

    told: list[str] = field(default_factory=list)  # they had received it: a notice is on its way
    with_referral: list[str] = field(default_factory=list)  # correction: the new details come with the referral
    not_told: list[str] = field(default_factory=list)  # they had not received it: nothing to tell them


def reach(kind: NoticeKind, deliveries: list[DeliveryView]) -> Reach:
    result = Reach()
    for d in deliveries:
        if kind is NoticeKind.CORRECTION and d.status in _GONE:
            continue  # withdrawn or expired there: a correction is not sent after it
        if received(d):
            result.told.append(d.clinic_name)
        elif kind is NoticeKind.CORRECTION:
            result.with_referral.append(d.clinic_name)
        else:
            result.not_told.append(d.clinic_name)
    return result


@dataclass(frozen=True)
class PlannedNotices:
    sealed: list[uuid.UUID]  # notice ids
    unsealable: list[str]  # clinic slugs with no active encryption key: nobody could read it
    notifications: list[uuid.UUID]  # clinic notifications to ring after commit
    reach: Reach = field(default_factory=Reach)


async def seal_notices(
    ctx: BrokerContext,
    conn: Connection,
    *,
    kind: NoticeKind,
    reference: str,
    deliveries: list[DeliveryView],
    requested_at: datetime,
    patient: Patient | None = None,
) -> PlannedNotices:
    """Seal one notice per clinic to be told, store them, and plan each clinic's "something waits" mail.

    `deliveries` must have been read with their rows locked in the caller's transaction."""
    concerned = [d for d in deliveries if told_about(kind, d)]
    if not concerned:
        return PlannedNotices([], [], [], reach(kind, deliveries))
    now = ctx.clock()
    targets = {t.slug: t for t in await clinics.sealing_targets(conn, [d.clinic_slug for d in concerned])}
    rows: list[notices.NewNotice] = []
    unsealable: list[str] = []
    servable_now: set[uuid.UUID] = set()
    for delivery in concerned:
        target = targets.get(delivery.clinic_slug)
        if target is None or not target.encryption_keys:
            unsealable.append(delivery.clinic_slug)
            continue
        notice_id = uuid.uuid4()
        payload = NoticePayload(
            format=NOTICE_PAYLOAD_FORMAT,
            kind=kind.value,
            notice_id=str(notice_id),
            delivery_id=str(delivery.id),
            reference=reference,
            clinic=target.slug,
            issued_at=now,
            requested_at=requested_at,
            message=texts.notice_message(kind),
            patient=patient if kind is NoticeKind.CORRECTION else None,
        )
        sealed = envelope.seal(
            _encode(payload),
            kind=kind.value,
            delivery_id=str(notice_id),
            reference=reference,
            clinic=target.slug,
            issued_at=now,
            recipient_keys=target.encryption_keys,
            signer=ctx.keys.signer,
        )
        rows.append(
            notices.NewNotice(
                id=notice_id,
                delivery_id=delivery.id,
                clinic_id=target.id,
                kind=kind.value,
                envelope=sealed.data,
                envelope_sha256=hashlib.sha256(sealed.data).digest(),
                recipient_keys=[r.key_id for r in sealed.body.recipients],
            )
        )
        if received(delivery) or delivery.status == DeliveryStatus.AVAILABLE.value:
            servable_now.add(target.id)  # a waiting copy is listed again, with the notice after it
    await notices.insert(conn, rows, now)
    await inbox_signal.notify(conn, {r.clinic_id for r in rows})  # sent at commit: waiting inboxes read again
    planned = await notifications.plan_after_dispatch(ctx, conn, servable_now)
    return PlannedNotices([r.id for r in rows], unsealable, planned, reach(kind, deliveries))


async def ring(ctx: BrokerContext, planned: PlannedNotices) -> None:
    await notifications.ring(ctx, planned.notifications)
