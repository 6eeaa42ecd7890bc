"""Sealing notices to the clinics a referral went to (GDPR art. 19), inside the caller's transaction.

Who is told:
- a correction goes to every clinic whose copy is not cancelled or expired: one that has it, and one
  that will get it (its correction is served right after the referral is acknowledged);
- an erasure or a withdrawal goes to every clinic that has, or may have, fetched it: acknowledged,
  or made available at some point (a copy cancelled while waiting may have been fetched and not yet
  acknowledged, so that clinic is told as well).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
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
_MAY_HOLD = frozenset({DeliveryStatus.ACKNOWLEDGED.value, DeliveryStatus.AVAILABLE.value})


def told_about(kind: NoticeKind, delivery: DeliveryView) -> bool:
    if kind is NoticeKind.CORRECTION:
        return delivery.status not in _GONE
    if delivery.status == DeliveryStatus.CANCELLED.value:  # cancelled from an inbox, or before it got there
        return delivery.dispatched_at is not None
    return delivery.status in _MAY_HOLD


@dataclass(frozen=True)
class PlannedNotices:
    sealed: list[uuid.UUID]  # notice ids
    unsealable: list[str]  # clinic slugs with no active encryption key: nobody could read it
    notifications: list[uuid.UUID]  # clinic notifications to ring after commit


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
    """Seal one notice per clinic to be told, store them, and plan each clinic's "something waits" mail."""
    concerned = [d for d in deliveries if told_about(kind, d)]
    if not concerned:
        return PlannedNotices([], [], [])
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
        if delivery.status == DeliveryStatus.ACKNOWLEDGED.value or kind is not NoticeKind.CORRECTION:
            servable_now.add(target.id)
    await notices.insert(conn, rows, now)
    await inbox_signal.notify(conn, {r.clinic_id for r in rows})  # sent at commit: waiting inboxes read again
    planned = await notifications.plan_after_dispatch(ctx, conn, servable_now)
    return PlannedNotices([r.id for r in rows], unsealable, planned)


async def ring(ctx: BrokerContext, planned: PlannedNotices) -> None:
    await notifications.ring(ctx, planned.notifications)
