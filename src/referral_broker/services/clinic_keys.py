"""A clinic's keys after enrolment: new keys (another machine, or a rotation), retirement, revocation.

A new key arrives as a key request endorsed by one of the clinic's active signing keys; it waits as
`pending` until the operator compares its fingerprint on the phone (`enrolment.verify`). A rotation
names the key it replaces, which becomes `retiring` when the new one is verified: nothing new is
sealed to it, and it retires once no waiting delivery or notice was sealed to it. Revocation is immediate:
nothing more is sealed to the key, and deliveries that only it could open become `undeliverable`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from referral_broker.domain.keys import ClinicStatus, KeyPurpose, KeyState, check_key_move
from referral_broker.services.context import BrokerContext
from referral_broker.store import audit, clinics, notices, undeliverable
from referral_broker.store.clinics import ClinicKeyRow, ClinicRow
from referral_broker.store.pool import Connection
from referral_protocol.clinic_identity import (
    EnrollmentInvalid,
    check_key_request,
    key_request_fingerprint,
    verify_endorsement,
)
from referral_protocol.encoding import key_id
from referral_protocol.enrolment import KeyRequestAnswer
from referral_protocol.errors import DomainError

REVOKED_REASON = "sealed only to revoked keys"


class KeyChangeRefused(DomainError):
    """A key request or key change cannot go ahead; the message says why."""


async def request_key(
    ctx: BrokerContext, data: bytes, *, actor: str, caller: ClinicRow | None = None
) -> KeyRequestAnswer:
    """Record the keys of an endorsed key request as pending; return the fingerprint to confirm.

    `caller` is the clinic whose signed request carried it (the clinic API); the operator's command
    passes none. Sending the same request again answers the same and records nothing new.
    """
    try:
        request = check_key_request(data)
    except EnrollmentInvalid as exc:
        raise KeyChangeRefused(str(exc)) from None
    if caller is not None and caller.slug != request.slug:
        raise KeyChangeRefused(f"the key request is for {request.slug!r}, not for the calling clinic")
    fingerprint = key_request_fingerprint(request)
    new_keys = [(KeyPurpose.ENCRYPTION, request.encryption_key)]
    if request.signing_key is not None:
        new_keys.append((KeyPurpose.SIGNING, request.signing_key))
    answer = KeyRequestAnswer(fingerprint=fingerprint, key_ids=[key_id(k) for _, k in new_keys])
    now = ctx.clock()
    async with ctx.pool.acquire() as conn, conn.transaction():
        clinic = await clinics.by_slug(conn, request.slug)
        if clinic is None:
            raise KeyChangeRefused(f"no clinic called {request.slug!r} is enrolled")
        if clinic.status == ClinicStatus.SUSPENDED:
            raise KeyChangeRefused(f"{request.slug!r} is suspended; contact the broker's operator")
        endorser = await clinics.key_by_key_id(conn, clinic.id, request.endorsed_by or "")
        if endorser is None or endorser.purpose != KeyPurpose.SIGNING or endorser.state != KeyState.ACTIVE:
            raise KeyChangeRefused("the key request must be endorsed by an active signing key of the clinic")
        try:
            verify_endorsement(request, endorser.public_key)
        except EnrollmentInvalid as exc:
            raise KeyChangeRefused(str(exc)) from None
        existing = [await clinics.key_by_key_id(conn, clinic.id, k) for k in answer.key_ids]
        if all(k is not None and k.fingerprint == fingerprint for k in existing):
            return answer  # sent again (a retry after a lost answer)
        replaces = await _replaced_key(conn, clinic, request.replaces)
        try:
            async with conn.transaction():
                for purpose, public in new_keys:
                    await clinics.insert_key(
                        conn,
                        clinic_id=clinic.id,
                        purpose=purpose,
                        key_id=key_id(public),
                        public_key=public,
                        fingerprint=fingerprint,
                        replaces=replaces if purpose == KeyPurpose.ENCRYPTION else None,
                        endorsed_by=endorser.key_id,
                    )
        except asyncpg.UniqueViolationError:
            raise KeyChangeRefused("one of these keys is already known to the broker") from None
        await audit.append(
            conn,
            at=now,
            actor=actor,
            action="clinic.key_requested",
            subject=clinic.slug,
            details={
                "kind": request.kind,
                "fingerprint": fingerprint,
                "keys": answer.key_ids,
                "endorsed_by": endorser.key_id,
                "replaces": request.replaces,
            },
        )
    return answer


async def _replaced_key(conn: Connection, clinic: ClinicRow, replaces: str | None) -> uuid.UUID | None:
    if replaces is None:
        return None
    old = await clinics.key_by_key_id(conn, clinic.id, replaces)
    if old is None or old.purpose != KeyPurpose.ENCRYPTION or old.state != KeyState.ACTIVE:
        raise KeyChangeRefused(f"key {replaces} is not an active encryption key of {clinic.slug!r}")
    return old.id


@dataclass(frozen=True)
class Revocation:
    key: ClinicKeyRow
    undeliverable: list[uuid.UUID]  # deliveries that only revoked keys could open
    active_encryption_keys: int  # left after the revocation


async def revoke_key(ctx: BrokerContext, slug: str, key: str, *, actor: str) -> Revocation:
    """Revoke at once: nothing more is sealed to it or signed with it; what only it could open is flagged."""
    now = ctx.clock()
    async with ctx.pool.acquire() as conn, conn.transaction():
        clinic = await clinics.by_slug(conn, slug)
        if clinic is None:
            raise KeyChangeRefused(f"no clinic called {slug!r} is enrolled")
        row = await clinics.key_by_key_id(conn, clinic.id, key)
        if row is None:
            raise KeyChangeRefused(f"{slug!r} has no key {key!r}; `referral-broker clinic list` shows its keys")
        if row.state == KeyState.REVOKED:
            raise KeyChangeRefused(f"key {key} of {slug!r} is already revoked")
        check_key_move(KeyState(row.state), KeyState.REVOKED)
        await clinics.move_key(conn, row.id, target=KeyState.REVOKED, now=now, by=actor)
        lost: list[uuid.UUID] = []
        if row.purpose == KeyPurpose.ENCRYPTION:
            usable = await clinics.usable_encryption_key_ids(conn, clinic.id)
            lost = await undeliverable.mark_sealed_only_to_unusable(conn, clinic.id, usable, now, REVOKED_REASON)
        await audit.append(
            conn,
            at=now,
            actor=actor,
            action="clinic.key_revoked",
            subject=slug,
            details={"key": key, "purpose": row.purpose, "undeliverable": [str(i) for i in lost]},
        )
        left = [k for k in await clinics.keys_of(conn, clinic.id) if k.purpose == KeyPurpose.ENCRYPTION]
    return Revocation(row, lost, sum(1 for k in left if k.state == KeyState.ACTIVE))


async def retire_finished_keys(conn: Connection, clinic: ClinicRow, now: datetime) -> list[str]:
    """Retiring keys that no waiting delivery or notice was sealed to any more become retired; returns their ids."""
    keys = [k for k in await clinics.keys_of(conn, clinic.id) if k.state == KeyState.RETIRING]
    if not keys:
        return []
    ids = [k.key_id for k in keys]
    holding = await undeliverable.keys_still_holding(conn, clinic.id, ids)
    holding |= await notices.keys_still_holding(conn, clinic.id, ids)
    retired: list[str] = []
    for k in keys:
        if k.key_id in holding:
            continue
        check_key_move(KeyState(k.state), KeyState.RETIRED)
        if await clinics.move_key(conn, k.id, target=KeyState.RETIRED, now=now, by="broker"):
            retired.append(k.key_id)
    if retired:
        await audit.append(
            conn, at=now, actor="broker", action="clinic.key_retired", subject=clinic.slug, details={"keys": retired}
        )
    return retired


async def undeliverable_summary(ctx: BrokerContext) -> list[undeliverable.UndeliverableAtClinic]:
    return await undeliverable.by_clinic(ctx.pool)
