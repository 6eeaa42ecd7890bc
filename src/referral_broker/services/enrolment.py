"""Enrolment: a clinic's keys become usable only after an operator verified the fingerprint out of band."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from referral_broker.domain.keys import KeyPurpose, KeyState
from referral_broker.services.context import BrokerContext
from referral_broker.store import audit, clinics
from referral_broker.store.clinics import ClinicKeyRow, ClinicRow
from referral_protocol.categories import CATEGORIES
from referral_protocol.clinic_identity import EnrollmentInvalid, check_enrollment, fingerprint_of
from referral_protocol.encoding import key_id, normalise_fingerprint
from referral_protocol.errors import DomainError


class EnrolmentRefused(DomainError):
    """The enrolment or verification cannot go ahead; the message says why and what to do."""


@dataclass(frozen=True)
class ClinicWithKeys:
    clinic: ClinicRow
    keys: list[ClinicKeyRow]


async def add_clinic(
    ctx: BrokerContext,
    enrollment_file: bytes,
    *,
    actor: str,
    city: str | None = None,
    categories: list[str] | None = None,
    description: str | None = None,
) -> tuple[ClinicRow, str]:
    """Record the clinic and its keys as pending; return the fingerprint the operator must confirm."""
    try:
        e = check_enrollment(enrollment_file)
    except EnrollmentInvalid as exc:
        raise EnrolmentRefused(str(exc)) from None
    if e.organisation_number is None:
        raise EnrolmentRefused(
            "the enrolment file names no organisation number; the clinic makes a new one with a current "
            "referral-clinic: `referral-clinic init ... --organisation-number NNNNNNNNN`"
        )
    unknown = [c for c in categories or [] if c not in CATEGORIES]
    if unknown:
        raise EnrolmentRefused(f"unknown categories {unknown}; choose from {sorted(CATEGORIES)}")
    fingerprint = fingerprint_of(e)
    now = ctx.clock()
    try:
        async with ctx.pool.acquire() as conn, conn.transaction():
            clinic = await clinics.insert_clinic(
                conn,
                slug=e.slug,
                name=e.name,
                city=city,
                categories=categories or [],
                description=description,
                organisation_number=e.organisation_number,
                her_id=e.her_id,
            )
            for purpose, public in (
                (KeyPurpose.ENCRYPTION, e.encryption_key),
                (KeyPurpose.SIGNING, e.signing_key),
            ):
                await clinics.insert_key(
                    conn,
                    clinic_id=clinic.id,
                    purpose=purpose,
                    key_id=key_id(public),
                    public_key=public,
                    fingerprint=fingerprint,
                )
            await audit.append(
                conn,
                at=now,
                actor=actor,
                action="clinic.enrolled",
                subject=e.slug,
                details={"fingerprint": fingerprint, "organisation_number": e.organisation_number},
            )
    except asyncpg.UniqueViolationError:
        raise EnrolmentRefused(f"a clinic called {e.slug!r} or one of these keys is already enrolled") from None
    return clinic, fingerprint


async def verify(ctx: BrokerContext, slug: str, fingerprint: str, *, actor: str) -> int:
    """Activate the clinic's pending keys if `fingerprint` is theirs; return how many keys were activated."""
    now = ctx.clock()
    async with ctx.pool.acquire() as conn, conn.transaction():
        clinic = await clinics.by_slug(conn, slug)
        if clinic is None:
            raise EnrolmentRefused(f"no clinic called {slug!r} is enrolled")
        pending = [k for k in await clinics.keys_of(conn, clinic.id) if k.state == KeyState.PENDING]
        if not pending:
            raise EnrolmentRefused(f"{slug!r} has no keys waiting for verification")
        given = normalise_fingerprint(fingerprint)
        matches = given in {k.fingerprint for k in pending}
        if matches:
            # Only the keys this fingerprint covers: a clinic may have an enrolment and a new key waiting.
            n, retiring = await clinics.activate_pending_keys(
                conn, clinic.id, fingerprint=given, now=now, verified_by=actor
            )
            details: dict[str, object] = {"fingerprint": given}
            if retiring:
                details["retiring"] = retiring  # rotation: the replaced keys keep what they hold, get nothing new
            await audit.append(conn, at=now, actor=actor, action="clinic.verified", subject=slug, details=details)
        else:
            # Recorded, and committed: raising inside the transaction would roll the record back.
            await audit.append(conn, at=now, actor=actor, action="clinic.verify_refused", subject=slug)
    if not matches:
        raise EnrolmentRefused(
            "the fingerprint does not match the enrolled keys; do not verify — call the clinic on a "
            "number you already know and compare again"
        )
    return n


async def list_clinics(ctx: BrokerContext) -> list[ClinicWithKeys]:
    result = []
    for clinic in await clinics.all_clinics(ctx.pool):
        result.append(ClinicWithKeys(clinic, await clinics.keys_of(ctx.pool, clinic.id)))
    return result
