"""Referrals and their deliveries, written together with the outbox row that dispatches them."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from referral_broker.domain.delivery import DeliveryStatus, sources_of
from referral_broker.store.pool import Connection, Executor


@dataclass(frozen=True)
class NewDelivery:
    id: uuid.UUID
    clinic_id: uuid.UUID
    envelope: bytes
    envelope_sha256: bytes
    recipient_keys: list[str]


@dataclass(frozen=True)
class NewReferral:
    id: uuid.UUID
    reference: str
    created_at: datetime
    consent_version: str
    consent_text_sha256: str
    contact_ct: bytes
    email_bidx: bytes
    phone_bidx: bytes
    manage_token_hash: bytes
    deliveries: list[NewDelivery]
    idempotency_hash: bytes | None = None


class _Statement:
    """SQL written with `:name` parameters, numbered once for asyncpg (`$1`, …) in order of first use.

    Eighteen positional parameters cannot be read; named ones say what goes where. `::type` casts are
    left alone (the colon before a name must not follow another colon)."""

    def __init__(self, sql: str) -> None:
        self.names: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match[1] not in self.names:
                self.names.append(match[1])
            return f"${self.names.index(match[1]) + 1}"

        self.sql = re.sub(r"(?<![:\w]):([a-z_][a-z0-9_]*)", number, sql)

    def arguments(self, **values: object) -> list[object]:
        """The values in the statement's order; every name exactly once, or TypeError."""
        if values.keys() != set(self.names):
            raise TypeError(f"the statement takes {sorted(self.names)}, not {sorted(values)}")
        return [values[name] for name in self.names]


class ReferenceTaken(Exception):
    """The random reference collided with an existing one; draw another."""


class AlreadySubmitted(Exception):
    """A referral with this idempotency key exists (a retried or repeated submission)."""


class ClinicsChanged(Exception):
    """A chosen clinic is no longer active, or its active encryption keys are not the ones sealed to: look
    the clinics up again and seal anew. Nothing was stored."""


#: The referral's unique indexes (migration 0009), and what a collision on each means.
_REFERENCE_INDEX = "referrals_reference_key"
_REPEAT_INDEXES = frozenset({"referrals_idempotency_hash_key", "referrals_manage_token_hash_key"})

_INSERT_REFERRAL = _Statement(
    """WITH sealed AS (
           SELECT * FROM unnest(:delivery_ids::uuid[], :clinic_ids::uuid[], :envelopes::bytea[],
                                :envelope_hashes::bytea[], :recipient_keys::text[])
                    AS d(id, clinic_id, envelope, sha, keys)
       ), current AS (
           SELECT count(*) = cardinality(:delivery_ids::uuid[]) AS ok
           FROM (SELECT k.clinic_id, string_agg(k.key_id, ',' ORDER BY k.key_id) AS keys
                 FROM clinic_keys k JOIN clinics c ON c.id = k.clinic_id AND c.status = 'active'
                 WHERE k.clinic_id = ANY(:clinic_ids::uuid[]) AND k.purpose = 'encryption' AND k.state = 'active'
                 GROUP BY k.clinic_id) AS now_active
           JOIN unnest(:clinic_ids::uuid[], :sorted_recipient_keys::text[]) AS s(clinic_id, keys)
                ON s.clinic_id = now_active.clinic_id AND s.keys = now_active.keys
       ), referral AS (
           INSERT INTO referrals (id, reference, created_at, consent_version, consent_text_sha256,
                                  consent_at, contact_ct, email_bidx, phone_bidx, manage_token_hash,
                                  idempotency_hash)
           SELECT :id, :reference, :created_at, :consent_version, :consent_text_sha256, :created_at,
                  :contact_ct, :email_bidx, :phone_bidx, :manage_token_hash, :idempotency_hash
           FROM current WHERE ok
           RETURNING id
       ), delivery AS (
           INSERT INTO deliveries (id, referral_id, clinic_id, status, envelope, envelope_sha256,
                                   recipient_keys, created_at, updated_at)
           SELECT s.id, :id, s.clinic_id, :status, s.envelope, s.sha, string_to_array(s.keys, ','),
                  :created_at, :created_at
           FROM sealed s WHERE EXISTS (SELECT 1 FROM referral)
       ), outbox_row AS (
           INSERT INTO outbox (job, subject_id, due_at, created_at)
           SELECT :dispatch_job, :id, :created_at, :created_at WHERE EXISTS (SELECT 1 FROM referral)
       )
       SELECT count(*) FROM referral"""
)


async def insert_referral(conn: Executor, r: NewReferral, *, dispatch_job: str) -> None:
    """One statement, so one atomic commit: the referral, one delivery per clinic, and the outbox row.

    The same statement checks that each clinic is still active and that its active encryption keys are
    exactly those the delivery was sealed to (what intake knew of the clinics may be seconds old), and
    stores nothing otherwise (`ClinicsChanged`). The check is one aggregate joined to the sealed key
    sets, not a subquery a delivery: PostgreSQL then keeps one generic plan for the statement instead
    of planning it anew on each call (measured: docs/performance.md)."""
    d = r.deliveries
    try:
        stored = await conn.fetchval(
            _INSERT_REFERRAL.sql,
            *_INSERT_REFERRAL.arguments(
                id=r.id,
                reference=r.reference,
                created_at=r.created_at,
                consent_version=r.consent_version,
                consent_text_sha256=r.consent_text_sha256,
                contact_ct=r.contact_ct,
                email_bidx=r.email_bidx,
                phone_bidx=r.phone_bidx,
                manage_token_hash=r.manage_token_hash,
                idempotency_hash=r.idempotency_hash,
                status=DeliveryStatus.QUEUED.value,
                dispatch_job=dispatch_job,
                delivery_ids=[x.id for x in d],
                clinic_ids=[x.clinic_id for x in d],
                envelopes=[x.envelope for x in d],
                envelope_hashes=[x.envelope_sha256 for x in d],
                recipient_keys=[",".join(x.recipient_keys) for x in d],
                sorted_recipient_keys=[",".join(sorted(x.recipient_keys)) for x in d],
            ),
        )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == _REFERENCE_INDEX:
            raise ReferenceTaken from exc
        # A keyed repeat derives its idempotency hash and its manage token from the same key, so it
        # collides on both; PostgreSQL names whichever index it checked first.
        if r.idempotency_hash is not None and exc.constraint_name in _REPEAT_INDEXES:
            raise AlreadySubmitted from exc
        raise
    if not stored:
        raise ClinicsChanged


@dataclass(frozen=True)
class DeliveryView:
    """What a patient or operator may see of one delivery: metadata, never content."""

    id: uuid.UUID
    clinic_slug: str
    clinic_name: str
    status: str
    created_at: datetime
    dispatched_at: datetime | None
    acknowledged_at: datetime | None
    served_at: datetime | None = None  # first listed to the clinic (None: it has never seen it)


async def deliveries_of(conn: Executor, referral_id: uuid.UUID, *, lock: bool = False) -> list[DeliveryView]:
    """The referral's deliveries; with `lock`, their rows stay locked until the caller's transaction ends
    (who is told of a change is decided on them, while a clinic's listing waits: decision 0139)."""
    rows = await conn.fetch(
        f"""SELECT d.id, c.slug AS clinic_slug, c.name AS clinic_name, d.status, d.created_at, d.dispatched_at,
                  d.acknowledged_at, d.served_at
           FROM deliveries d JOIN clinics c ON c.id = d.clinic_id
           WHERE d.referral_id = $1 ORDER BY c.name {"FOR UPDATE OF d" if lock else ""}""",  # noqa: S608 - constants
        referral_id,
    )
    return [DeliveryView(**dict(r)) for r in rows]


@dataclass(frozen=True)
class ManagedReferral:
    """What the holder of a manage link may see of their referral: dates and states, never content."""

    id: uuid.UUID
    reference: str
    created_at: datetime
    withdrawn_at: datetime | None
    anonymised_at: datetime | None


_MANAGED = """SELECT id, reference, created_at, withdrawn_at, anonymised_at
               FROM referrals WHERE manage_token_hash = $1"""


async def managed_by_token_hash(conn: Executor, token_hash: bytes) -> ManagedReferral | None:
    row = await conn.fetchrow(_MANAGED, token_hash)
    return ManagedReferral(**dict(row)) if row else None


async def lock_for_withdrawal(conn: Connection, token_hash: bytes) -> ManagedReferral | None:
    """The referral behind a manage token, locked until the caller's transaction ends."""
    row = await conn.fetchrow(_MANAGED + " FOR UPDATE", token_hash)
    return ManagedReferral(**dict(row)) if row else None


async def mark_withdrawn(conn: Connection, referral_id: uuid.UUID, now: datetime) -> None:
    await conn.execute(
        "UPDATE referrals SET withdrawn_at = $2 WHERE id = $1 AND withdrawn_at IS NULL", referral_id, now
    )


async def cancel_undelivered(conn: Connection, referral_id: uuid.UUID, now: datetime) -> list[uuid.UUID]:
    """Every delivery the clinic has not acknowledged → cancelled, its envelope dropped.

    Sources come from the state machine; `available` is among them, so a delivery waiting in a clinic's
    inbox leaves it (the inbox lists only `available`) and its ciphertext is gone."""
    rows = await conn.fetch(
        """UPDATE deliveries SET status = $2, envelope = NULL, updated_at = $3, last_error = NULL
           WHERE referral_id = $1 AND status = ANY($4::text[])
           RETURNING id""",
        referral_id,
        DeliveryStatus.CANCELLED.value,
        now,
        sources_of(DeliveryStatus.CANCELLED),
    )
    return [r["id"] for r in rows]


@dataclass(frozen=True)
class SubmittedReferral:
    id: uuid.UUID
    reference: str
    created_at: datetime


async def by_idempotency_hash(conn: Executor, idempotency_hash: bytes) -> SubmittedReferral | None:
    """The not yet anonymised referral submitted under this idempotency key, if any."""
    row = await conn.fetchrow(
        "SELECT id, reference, created_at FROM referrals WHERE idempotency_hash = $1 AND reference IS NOT NULL",
        idempotency_hash,
    )
    return SubmittedReferral(row["id"], row["reference"], row["created_at"]) if row else None
