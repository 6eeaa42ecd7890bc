"""Clinics and their public keys."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from referral_broker.domain.keys import ClinicStatus, KeyPurpose, KeyState, check_key_move, key_sources_of
from referral_broker.store.pool import Connection, Executor


@dataclass(frozen=True)
class ClinicRow:
    id: uuid.UUID
    slug: str
    name: str
    city: str | None
    categories: list[str]
    description: str | None
    status: str
    created_at: datetime
    last_pull_at: datetime | None
    organisation_number: str | None  # None only for clinics enrolled before it was asked for (0013)
    her_id: str | None


#: The columns of a ClinicRow, as selected from `clinics c`.
_CLINIC_COLUMNS = (
    "c.id, c.slug, c.name, c.city, c.categories, c.description, c.status, c.created_at, c.last_pull_at, "
    "c.organisation_number, c.her_id"
)


@dataclass(frozen=True)
class ClinicKeyRow:
    id: uuid.UUID
    clinic_id: uuid.UUID
    purpose: str
    key_id: str
    public_key: bytes
    fingerprint: str
    state: str


@dataclass(frozen=True)
class SealingTarget:
    """What intake needs of a chosen clinic: whether it may receive, and the keys to seal to."""

    id: uuid.UUID
    slug: str
    status: str
    encryption_keys: list[bytes]


def _clinic(r: asyncpg.Record) -> ClinicRow:
    return ClinicRow(**dict(r))


def _key(r: asyncpg.Record) -> ClinicKeyRow:
    return ClinicKeyRow(**dict(r))


async def insert_clinic(
    conn: Connection,
    *,
    slug: str,
    name: str,
    city: str | None,
    categories: list[str],
    description: str | None,
    organisation_number: str | None,
    her_id: str | None,
) -> ClinicRow:
    row = await conn.fetchrow(
        f"""INSERT INTO clinics AS c (id, slug, name, city, categories, description, organisation_number, her_id)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {_CLINIC_COLUMNS}""",  # noqa: S608 - constant columns
        uuid.uuid4(),
        slug,
        name,
        city,
        categories,
        description,
        organisation_number,
        her_id,
    )
    assert row is not None  # noqa: S101 - INSERT … RETURNING always returns the row
    return _clinic(row)


async def insert_key(
    conn: Connection,
    *,
    clinic_id: uuid.UUID,
    purpose: KeyPurpose,
    key_id: str,
    public_key: bytes,
    fingerprint: str,
    replaces: uuid.UUID | None = None,
    endorsed_by: str | None = None,
) -> uuid.UUID:
    new_id = uuid.uuid4()
    await conn.execute(
        """INSERT INTO clinic_keys (id, clinic_id, purpose, key_id, public_key, fingerprint, replaces, endorsed_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        new_id,
        clinic_id,
        purpose.value,
        key_id,
        public_key,
        fingerprint,
        replaces,
        endorsed_by,
    )
    return new_id


async def by_slug(conn: Executor, slug: str) -> ClinicRow | None:
    row = await conn.fetchrow(
        f"SELECT {_CLINIC_COLUMNS} FROM clinics c WHERE c.slug = $1",  # noqa: S608 - constant columns
        slug,
    )
    return _clinic(row) if row else None


async def all_clinics(conn: Executor) -> list[ClinicRow]:
    return [
        _clinic(r)
        for r in await conn.fetch(
            f"SELECT {_CLINIC_COLUMNS} FROM clinics c ORDER BY c.slug"  # noqa: S608 - constant columns
        )
    ]


async def active_clinics(conn: Executor) -> list[ClinicRow]:
    """Clinics a patient may choose: active, with at least one active encryption key."""
    rows = await conn.fetch(
        f"""SELECT {_CLINIC_COLUMNS} FROM clinics c
            WHERE c.status = 'active' AND EXISTS (
                SELECT 1 FROM clinic_keys k WHERE k.clinic_id = c.id AND k.purpose = 'encryption'
                AND k.state = 'active')
            ORDER BY c.name"""  # noqa: S608 - constant columns
    )
    return [_clinic(r) for r in rows]


async def keys_of(conn: Executor, clinic_id: uuid.UUID) -> list[ClinicKeyRow]:
    rows = await conn.fetch(
        """SELECT id, clinic_id, purpose, key_id, public_key, fingerprint, state
           FROM clinic_keys WHERE clinic_id = $1 ORDER BY created_at, purpose""",
        clinic_id,
    )
    return [_key(r) for r in rows]


async def activate_pending_keys(
    conn: Connection, clinic_id: uuid.UUID, *, fingerprint: str, now: datetime, verified_by: str
) -> tuple[int, list[str]]:
    """Activate the clinic's pending keys that carry `fingerprint`, retire the keys they replace, and make
    the clinic active (unless suspended). Returns (keys activated, key ids now retiring)."""
    check_key_move(KeyState.PENDING, KeyState.ACTIVE)
    check_key_move(KeyState.ACTIVE, KeyState.RETIRING)
    activated = await conn.fetch(
        """UPDATE clinic_keys SET state = $2, verified_at = $3, verified_by = $4, state_changed_at = $3,
                                  state_changed_by = $4
           WHERE clinic_id = $1 AND state = $5 AND fingerprint = $6
           RETURNING replaces""",
        clinic_id,
        KeyState.ACTIVE.value,
        now,
        verified_by,
        KeyState.PENDING.value,
        fingerprint,
    )
    replaced = [r["replaces"] for r in activated if r["replaces"] is not None]
    retiring = await conn.fetch(
        """UPDATE clinic_keys SET state = $3, state_changed_at = $4, state_changed_by = $5
           WHERE clinic_id = $1 AND id = ANY($2::uuid[]) AND state = $6
           RETURNING key_id""",
        clinic_id,
        replaced,
        KeyState.RETIRING.value,
        now,
        verified_by,
        KeyState.ACTIVE.value,
    )
    await conn.execute(
        "UPDATE clinics SET status = $2 WHERE id = $1 AND status = $3",
        clinic_id,
        ClinicStatus.ACTIVE.value,
        ClinicStatus.PENDING.value,
    )
    return len(activated), [r["key_id"] for r in retiring]


async def key_by_key_id(conn: Executor, clinic_id: uuid.UUID, key_id: str) -> ClinicKeyRow | None:
    row = await conn.fetchrow(
        """SELECT id, clinic_id, purpose, key_id, public_key, fingerprint, state
           FROM clinic_keys WHERE clinic_id = $1 AND key_id = $2""",
        clinic_id,
        key_id,
    )
    return _key(row) if row else None


async def move_key(conn: Connection, key: uuid.UUID, *, target: KeyState, now: datetime, by: str) -> bool:
    """One conditional UPDATE: the key moves only from a state the key state machine lets reach `target`."""
    result = await conn.execute(
        """UPDATE clinic_keys SET state = $2, state_changed_at = $3, state_changed_by = $4
           WHERE id = $1 AND state = ANY($5::text[])""",
        key,
        target.value,
        now,
        by,
        key_sources_of(target),
    )
    return result.split()[-1] == "1"


async def usable_encryption_key_ids(conn: Executor, clinic_id: uuid.UUID) -> list[str]:
    """Keys a waiting delivery may still be opened with: active, and retiring ones (the overlap)."""
    rows = await conn.fetch(
        """SELECT key_id FROM clinic_keys WHERE clinic_id = $1 AND purpose = 'encryption'
           AND state IN ('active', 'retiring')""",
        clinic_id,
    )
    return [r["key_id"] for r in rows]


async def sealing_targets(conn: Executor, slugs: list[str]) -> list[SealingTarget]:
    rows = await conn.fetch(
        """SELECT c.id, c.slug, c.status,
                  coalesce(array_agg(k.public_key ORDER BY k.created_at)
                           FILTER (WHERE k.id IS NOT NULL), '{}') AS encryption_keys
           FROM clinics c
           LEFT JOIN clinic_keys k ON k.clinic_id = c.id AND k.purpose = 'encryption' AND k.state = 'active'
           WHERE c.slug = ANY($1::text[])
           GROUP BY c.id""",
        slugs,
    )
    return [SealingTarget(r["id"], r["slug"], r["status"], list(r["encryption_keys"])) for r in rows]


async def signing_key(conn: Executor, key_id: str) -> tuple[ClinicRow, ClinicKeyRow] | None:
    """The clinic and signing key a request names, whatever their states (the caller decides)."""
    row = await conn.fetchrow(
        f"""SELECT {_CLINIC_COLUMNS},
                   k.id AS k_id, k.purpose AS k_purpose, k.key_id AS k_key_id, k.public_key AS k_public_key,
                   k.fingerprint AS k_fingerprint, k.state AS k_state
            FROM clinic_keys k JOIN clinics c ON c.id = k.clinic_id
            WHERE k.key_id = $1 AND k.purpose = 'signing'""",  # noqa: S608 - constant columns
        key_id,
    )
    if row is None:
        return None
    d = dict(row)
    key = ClinicKeyRow(
        id=d.pop("k_id"),
        clinic_id=d["id"],
        purpose=d.pop("k_purpose"),
        key_id=d.pop("k_key_id"),
        public_key=d.pop("k_public_key"),
        fingerprint=d.pop("k_fingerprint"),
        state=d.pop("k_state"),
    )
    return ClinicRow(**d), key


async def record_pull(conn: Executor, clinic_id: uuid.UUID, now: datetime) -> None:
    await conn.execute("UPDATE clinics SET last_pull_at = $2 WHERE id = $1", clinic_id, now)
