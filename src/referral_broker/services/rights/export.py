"""Access and portability (GDPR art. 15, 20): everything held about the linked referrals as one JSON
document in a versioned format, never content (the broker cannot read it)."""

from __future__ import annotations

from datetime import date, datetime

import msgspec

from referral_broker import texts
from referral_broker.domain.retention import LOCAL_TIME
from referral_broker.services.context import BrokerContext
from referral_broker.services.rights.linked import LinkedView, overview
from referral_broker.services.rights.sessions import RightsSession
from referral_broker.store import audit
from referral_protocol.referral import ContactCopy

EXPORT_FORMAT = "referral-broker/subject-access/v1"
_encode = msgspec.json.Encoder().encode


class ExportedDelivery(msgspec.Struct):
    clinic: str
    clinic_name: str
    status: str
    created_at: datetime
    made_available_at: datetime | None
    received_by_clinic_at: datetime | None
    #: first listed to the clinic; None: it never fetched it, so it is told of no correction, withdrawal
    #: or erasure (a correction comes with the referral instead)
    fetched_by_clinic_at: datetime | None = None


class ExportedNotice(msgspec.Struct):
    clinic_delivery: str
    kind: str
    status: str
    created_at: datetime
    received_by_clinic_at: datetime | None
    clinic_name: str = ""  # the clinic this notice went to


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


def _exported(v: LinkedView) -> ExportedReferral:
    names = {d.id: d.clinic_name for d in v.deliveries}
    return ExportedReferral(
        reference=v.reference,
        submitted_at=v.submitted_at,
        contact_details=v.contact,
        consent=ExportedConsent(v.consent_version, v.consent_text_sha256, v.consent_at, v.withdrawn_at),
        deliveries=[
            ExportedDelivery(
                d.clinic_slug,
                d.clinic_name,
                d.status,
                d.created_at,
                d.dispatched_at,
                d.acknowledged_at,
                d.served_at,
            )
            for d in v.deliveries
        ],
        notices_to_clinics=[
            ExportedNotice(
                str(n.delivery_id), n.kind, n.status, n.created_at, n.acknowledged_at, names.get(n.delivery_id, "")
            )
            for n in v.notices
        ],
        anonymised_after=v.kept_until.astimezone(LOCAL_TIME).date(),
    )


def _explanation() -> dict[str, str]:
    """What the export is, and how long the contact details are kept: the sentence the receipt uses too."""
    what, kept = texts.in_both("export.explanation"), texts.in_both("retention.contact")
    return {language: f"{what[i]} {kept[i]}" for i, language in enumerate(texts.BOTH)}


async def export(ctx: BrokerContext, session: RightsSession) -> bytes:
    """The export as the JSON file the patient downloads."""
    return msgspec.json.format(_encode(await export_document(ctx, session, form="json")), indent=2)


async def export_document(ctx: BrokerContext, session: RightsSession, *, form: str) -> SubjectAccessExport:
    """Everything held about the session's referrals, audited as one access (`form`: json or page); the JSON
    download and the printable page are both made from this one document, so they cannot say different things."""
    views = await overview(ctx, session)
    now = ctx.clock()
    document = SubjectAccessExport(
        format=EXPORT_FORMAT,
        generated_at=now,
        looked_up_by=session.channel,
        explanation=_explanation(),
        referrals=[_exported(v) for v in views],
    )
    async with ctx.pool.acquire() as conn, conn.transaction():
        await audit.append(
            conn,
            at=now,
            actor="patient",
            action="rights.exported",
            subject=str(session.code_id),
            details={"referrals": [str(v.id) for v in views], "form": form},
        )
    return document
