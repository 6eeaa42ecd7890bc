"""Rotating the broker's signing key with an overlap (issue 25; decisions 0071-0073).

1. `rotate`: a new key is made (not yet signing) and announced: for every clinic a key-change statement
   (`announce`, signed by the old key, carrying the new key and its fingerprint) is sealed to it and
   served first in its inbox. Clinics pin the new key beside the old and acknowledge the statement.
2. `activate`: the new key signs from now on (envelopes, receipts, webhooks); the old one is kept as
   `previous`, and clinics accept both.
3. `retire`: refused while an active clinic has not acknowledged the announcement (unless forced, which
   names them). Envelopes still waiting that the old key signed are signed again by the new key (their
   sealed bodies unchanged), a `retire` statement (signed by the new key) is made for every clinic,
   and the old key leaves the keys folder.

A clinic enrolled during a rotation gets its statements when it first pulls (`statements_for`). The
audit trail records each step with key ids only, never key material.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

import msgspec

from referral_broker.crypto import signing_keys
from referral_broker.crypto.signing_keys import SigningKeyProblem, SigningState
from referral_broker.services.context import BrokerContext
from referral_broker.store import audit, broker_key_changes, clinics
from referral_broker.store.broker_key_changes import ClinicPin, KeyChange
from referral_broker.store.clinics import ClinicRow
from referral_broker.store.pool import Connection
from referral_protocol.envelope import BrokerSigner, resign, seal
from referral_protocol.key_change import (
    KEY_CHANGE_KIND,
    KEY_CHANGE_REFERENCE,
    KeyChangeAction,
    broker_key_fingerprint,
    make_statement,
)

log = logging.getLogger(__name__)
ACTOR = "operator-cli"


class RotationRefused(Exception):
    """A signing-key step that must not happen now; the message says why and what to do."""


@dataclass(frozen=True)
class Announced:
    old_key_id: str
    new_key_id: str
    fingerprint: str
    statements: int
    resumed: bool


@dataclass(frozen=True)
class Retired:
    old_key_id: str
    new_key_id: str
    resigned: int
    statements: int
    forced: list[str]


def _signers(state: SigningState) -> dict[str, BrokerSigner]:
    found = {state.active.key_id: state.active}
    for extra in (state.next, state.previous):
        if extra is not None:
            found[extra.key_id] = extra
    return found


async def _clinic_keys(conn: Connection, clinic: ClinicRow) -> list[bytes]:
    return [
        k.public_key
        for k in await clinics.keys_of(conn, clinic.id)
        if k.purpose == "encryption" and k.state == "active"
    ]


async def _make_statement(
    conn: Connection, change: KeyChange, clinic: ClinicRow, signer: BrokerSigner, now: datetime
) -> bool:
    """Seal and store `change`'s statement for `clinic`, signed by `signer`; False if it has one already
    or no key to seal to (such a clinic cannot receive anything until it has one)."""
    recipients = await _clinic_keys(conn, clinic)
    if not recipients:
        return False
    statement_id = uuid.uuid4()
    statement = make_statement(
        KeyChangeAction(change.action),
        statement_id=str(statement_id),
        clinic=clinic.slug,
        issued_at=now,
        old_key=change.old_key,
        new_key=change.new_key,
    )
    sealed = seal(
        msgspec.json.encode(statement),
        kind=KEY_CHANGE_KIND,
        delivery_id=str(statement_id),
        reference=KEY_CHANGE_REFERENCE,
        clinic=clinic.slug,
        issued_at=now,
        recipient_keys=recipients,
        signer=signer,
    )
    return await broker_key_changes.insert_statement(
        conn, statement_id=statement_id, change_id=change.id, clinic_id=clinic.id, envelope=sealed.data, now=now
    )


async def _resign_all(conn: Connection, old_key_id: str, new: BrokerSigner, batch: int = 500) -> int:
    """Sign every waiting envelope (referrals and notices) `old_key_id` signed again with `new`; the count.
    A row signed again no longer matches, so each batch finds the next."""
    done = 0
    for kind in ("delivery", "notice"):
        while rows := await broker_key_changes.envelopes_signed_by(conn, kind, old_key_id, batch):
            for row_id, envelope in rows:
                await broker_key_changes.replace_envelope(conn, kind, row_id, resign(envelope, new))
            done += len(rows)
    return done


def _signer_for(change: KeyChange, signers: dict[str, BrokerSigner]) -> BrokerSigner | None:
    """Who signs this change's statements: the old key for an announcement, the new one for a retirement."""
    return signers.get(change.old_key_id if change.action == "announce" else change.new_key_id)


async def statements_for(
    ctx: BrokerContext, conn: Connection, clinic: ClinicRow
) -> list[tuple[uuid.UUID, bytes, bool]]:
    """The statements of the current rotation for `clinic`, in order, made now if it has none yet (a
    clinic enrolled during the rotation). Served first on the first page of every inbox reading, also
    after they are acknowledged: every machine of a clinic must see them. Each with whether the clinic has
    acknowledged it (then it is no news to wake a long poll for)."""
    cycle = await broker_key_changes.current_cycle(conn)
    if not cycle:
        return []
    have = await broker_key_changes.statements_of(conn, clinic.id, [c.id for c in cycle])
    if len(have) < len(cycle) and clinic.status == "active":
        signers = _signers(ctx.keys.signing.state())
        made = False
        for change in cycle:
            signer = _signer_for(change, signers)
            if signer is not None and change.id not in {s.change_id for s in have}:
                made |= await _make_statement(conn, change, clinic, signer, ctx.clock())
        if made:
            have = await broker_key_changes.statements_of(conn, clinic.id, [c.id for c in cycle])
    return [(s.id, s.envelope, s.acknowledged_at is not None) for s in have]


async def rotate(ctx: BrokerContext) -> Announced:
    """Make the new key (or take the one a rotation killed half-way made) and announce it to every clinic."""
    folder = ctx.settings.keys_dir
    try:
        state, new = signing_keys.make_next(folder)
    except SigningKeyProblem as exc:
        raise RotationRefused(str(exc)) from None
    except FileExistsError as exc:
        raise RotationRefused(f"{exc}; another rotation is being started at this moment") from None
    old = state.active
    now = ctx.clock()
    async with ctx.pool.acquire() as conn, conn.transaction():
        change = await broker_key_changes.insert_change(
            conn,
            action="announce",
            old_key_id=old.key_id,
            new_key_id=new.key_id,
            old_key=old.public_key,
            new_key=new.public_key,
            now=now,
        )
        if change is None:
            if state.next is not None:
                raise RotationRefused(
                    f"a rotation is already under way: the new signing key {new.key_id} was announced; "
                    "activate it with `referral-broker keys activate-signing` once clinics have pinned it "
                    "(`referral-broker keys signing-status`)"
                )
            raise RotationRefused(f"signing key {new.key_id} was announced before; nothing was changed")
        made = 0
        for clinic in await clinics.all_clinics(conn):
            if clinic.status == "active":
                made += await _make_statement(conn, change, clinic, old, now)
        await audit.append(
            conn,
            at=now,
            actor=ACTOR,
            action="broker_key.announced",
            subject=new.key_id,
            details={"old_key_id": old.key_id, "new_key_id": new.key_id, "statements": made},
        )
    return Announced(old.key_id, new.key_id, broker_key_fingerprint(new.public_key), made, state.next is not None)


async def activate(ctx: BrokerContext) -> tuple[str, str, list[ClinicPin]]:
    """Switch signing to the announced key. Returns (old key id, new key id, clinics that have not pinned)."""
    folder = ctx.settings.keys_dir
    try:
        state = signing_keys.read_state(folder)
    except SigningKeyProblem as exc:
        raise RotationRefused(str(exc)) from None
    if state.next is None:
        try:
            signing_keys.switch_to_next(folder)  # says why there is nothing to activate
        except SigningKeyProblem as exc:
            raise RotationRefused(str(exc)) from None
    assert state.next is not None  # noqa: S101 - switch_to_next raised otherwise
    async with ctx.pool.acquire() as conn:
        change = await broker_key_changes.change(conn, "announce", state.next.key_id)
        if change is None:
            raise RotationRefused(
                f"the new signing key {state.next.key_id} was never announced to the clinics; run "
                "`referral-broker keys rotate-signing` again to announce it, then activate"
            )
        unpinned = [
            p
            for p in await broker_key_changes.pins(conn, change.id)
            if p.status == "active" and p.acknowledged_at is None
        ]
    try:
        old, new = signing_keys.switch_to_next(folder)
    except SigningKeyProblem as exc:
        raise RotationRefused(str(exc)) from None
    async with ctx.pool.acquire() as conn, conn.transaction():
        await audit.append(
            conn,
            at=ctx.clock(),
            actor=ACTOR,
            action="broker_key.activated",
            subject=new.key_id,
            details={"old_key_id": old.key_id, "new_key_id": new.key_id, "not_pinned": [p.slug for p in unpinned]},
        )
    return old.key_id, new.key_id, unpinned


async def retire(ctx: BrokerContext, *, force: bool = False) -> Retired:
    """End the overlap: refused while an active clinic has not pinned the new key, unless `force`."""
    folder = ctx.settings.keys_dir
    try:
        state = signing_keys.read_state(folder)
    except SigningKeyProblem as exc:
        raise RotationRefused(str(exc)) from None
    if state.next is not None:
        raise RotationRefused(
            f"the new signing key {state.next.key_id} is not active yet: run `referral-broker keys activate-signing` "
            "first; the old key cannot retire while it still signs"
        )
    new = state.active
    async with ctx.pool.acquire() as conn:
        announced = await broker_key_changes.change(conn, "announce", new.key_id)
        done = await broker_key_changes.change(conn, "retire", new.key_id)
    if state.previous is None:
        if done is not None:
            raise RotationRefused(f"the key before {new.key_id} is already retired; nothing to do")
        raise RotationRefused("there is no previous signing key to retire: no rotation is under way")
    old = state.previous
    if announced is None:
        raise RotationRefused(f"signing key {new.key_id} was never announced; no clinic can have pinned it")
    async with ctx.pool.acquire() as conn:
        unpinned = [
            p.slug
            for p in await broker_key_changes.pins(conn, announced.id)
            if p.status == "active" and p.acknowledged_at is None
        ]
    if unpinned and not force:
        raise RotationRefused(
            f"{len(unpinned)} active clinic(s) have not pinned the new key {new.key_id}: {', '.join(unpinned)}. "
            "Wait until they pull, or call them; `--force` retires anyway and they will have to re-pin by hand"
        )
    now = ctx.clock()
    async with ctx.pool.acquire() as conn, conn.transaction():
        change = await broker_key_changes.insert_change(
            conn,
            action="retire",
            old_key_id=old.key_id,
            new_key_id=new.key_id,
            old_key=old.public_key,
            new_key=new.public_key,
            now=now,
        ) or await broker_key_changes.change(conn, "retire", new.key_id)
        assert change is not None  # noqa: S101 - inserted, or there before
        resigned = await _resign_all(conn, old.key_id, new)
        made = 0
        for clinic in await clinics.all_clinics(conn):
            if clinic.status == "active":
                made += await _make_statement(conn, change, clinic, new, now)
        await audit.append(
            conn,
            at=now,
            actor=ACTOR,
            action="broker_key.retired",
            subject=old.key_id,
            details={
                "old_key_id": old.key_id,
                "new_key_id": new.key_id,
                "resigned_envelopes": resigned,
                "statements": made,
                "forced_past": unpinned,
            },
        )
    signing_keys.drop_previous(folder, old.key_id)
    # Anything a process sealed with the old key before activation and stored only now (an intake in flight
    # across both steps) is signed again too: re-signing needs only the new key.
    async with ctx.pool.acquire() as conn, conn.transaction():
        late = await _resign_all(conn, old.key_id, new)
    if late:
        log.warning("%d envelope(s) signed by the retired key %s were stored late and signed again", late, old.key_id)
    return Retired(old.key_id, new.key_id, resigned, made, unpinned if force else [])


@dataclass(frozen=True)
class SigningStatus:
    phase: str
    active_key_id: str
    next_key_id: str | None
    previous_key_id: str | None
    pins: list[ClinicPin]  # of the current announcement; [] before any rotation


async def status(ctx: BrokerContext) -> SigningStatus:
    state = ctx.keys.signing.state()
    pinned: list[ClinicPin] = []
    async with ctx.pool.acquire() as conn:
        cycle = await broker_key_changes.current_cycle(conn)
        announce = next((c for c in cycle if c.action == "announce"), None)
        if announce is not None and (state.next is not None or state.previous is not None):
            pinned = await broker_key_changes.pins(conn, announce.id)
    return SigningStatus(
        phase=state.phase,
        active_key_id=state.active.key_id,
        next_key_id=state.next.key_id if state.next else None,
        previous_key_id=state.previous.key_id if state.previous else None,
        pins=pinned,
    )
