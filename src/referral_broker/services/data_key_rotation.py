"""Data-key rotation: add a key, re-encrypt everything stored under the old one, then retire it.

The order and its reasons are in docs/decisions/0069. The re-encryption job's idempotency argument:
it picks only values not yet under the current key, rewrites each with compare-and-set on the old
ciphertext, and commits batch by batch; a value is readable before its batch commits (old key, still a
fallback) and after (current key), so a run killed at any point leaves every row readable and the next
run continues where the last committed batch ended. A second run finds nothing to do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from referral_broker.crypto import data_keys
from referral_broker.crypto.contact import ContactDecryptionFailed, ContactVault, DataKey
from referral_broker.services import customer_service
from referral_broker.services.context import BrokerContext
from referral_broker.services.operators import totp_bound_to
from referral_broker.services.rights.sessions import code_bound_to
from referral_broker.store import audit
from referral_broker.store import data_key_rows as rows
from referral_protocol.errors import DomainError
from referral_protocol.referral import ContactCopy

log = logging.getLogger(__name__)

BATCH = 500
_ACTOR = "operator-cli"


class RetireRefused(DomainError):
    """Values are still stored under a key that would be retired; re-encrypt them first."""


@dataclass(frozen=True)
class Progress:
    table: str
    rewritten: int
    left_at_start: int


@dataclass(frozen=True)
class ReencryptRun:
    current_key_id: str
    rewritten: int
    #: values this process could not open (another key it does not hold, or damaged): left as they are
    unreadable: int
    left: int
    finished: bool  # False when the time budget ran out before the tables were walked
    fallback_key_ids: tuple[str, ...]  # the older keys this process still reads


def _bound_to(table: str, value: rows.StoredValue) -> bytes:
    if table == "operators":
        return totp_bound_to(value.id)
    if table == "rights_codes":
        return code_bound_to(value.id)
    if table == "customer_messages":
        return customer_service.message_bound(value.id)
    if table == "customer_answers":
        return customer_service.answer_bound(value.id)
    return value.id.bytes


def _rewrite_of(vault: ContactVault, table: str, value: rows.StoredValue) -> rows.Rewrite:
    bound_to = _bound_to(table, value)
    plain = vault.decrypt(value.ciphertext, bound_to=bound_to)
    new = vault.encrypt(plain, bound_to=bound_to)
    if table != "referrals":
        return rows.Rewrite(value.id, value.ciphertext, new)
    copy = msgspec.json.decode(plain, type=ContactCopy)
    # The same normalisation as intake and correction: the e-mail lower-cased, the phone as stored.
    return rows.Rewrite(
        value.id,
        value.ciphertext,
        new,
        email_bidx=vault.blind_index("email", copy.email.lower()),
        phone_bidx=vault.blind_index("phone", copy.phone),
    )


async def left(ctx: BrokerContext) -> dict[str, int]:
    """Per table, how many values are not yet under this process's current data key."""
    prefix = ctx.keys.vault.current_prefix
    return {table: await rows.left_in(ctx.pool, table, prefix) for table in rows.TABLES}


async def reencrypt(
    ctx: BrokerContext,
    *,
    batch_size: int = BATCH,
    budget_seconds: float | None = None,
    progress: Callable[[Progress], None] | None = None,
    actor: str = _ACTOR,
) -> ReencryptRun:
    """Re-encrypt every stored value not under the current key, in batches; stop early after the budget."""
    vault = ctx.keys.vault
    prefix = vault.current_prefix
    started = time.monotonic()
    rewritten = unreadable = 0
    finished = True
    for table in rows.TABLES:
        at_start = await rows.left_in(ctx.pool, table, prefix)
        done_here = 0
        after = None
        while at_start:
            batch = await rows.next_batch(ctx.pool, table, prefix, after, batch_size)
            if not batch:
                break
            after = batch[-1].id
            rewrites = []
            for value in batch:
                try:
                    rewrites.append(_rewrite_of(vault, table, value))
                except (ContactDecryptionFailed, msgspec.DecodeError, msgspec.ValidationError) as exc:
                    unreadable += 1
                    log.warning(
                        "a value in %s (%s) cannot be re-encrypted: %s", table, value.id, exc.__class__.__name__
                    )
            async with ctx.pool.acquire() as conn, conn.transaction():
                done_here += await rows.rewrite(conn, table, rewrites)
            if progress is not None:
                progress(Progress(table, done_here, at_start))
            if budget_seconds is not None and time.monotonic() - started > budget_seconds:
                finished = False  # at least one batch per run, so even a tiny budget makes progress
                break
        rewritten += done_here
        if not finished:
            break
    remaining = sum((await left(ctx)).values())
    run = ReencryptRun(
        vault.current.id_hex, rewritten, unreadable, remaining, finished, tuple(k.id_hex for k in vault.fallbacks)
    )
    if rewritten or unreadable:
        async with ctx.pool.acquire() as conn, conn.transaction():
            await audit.append(
                conn,
                at=ctx.clock(),
                actor=actor,
                action="data_key.reencrypted",
                subject=run.current_key_id,
                details={"rewritten": rewritten, "unreadable": unreadable, "left": remaining},
            )
    return run


async def rotate(ctx: BrokerContext, folder: Path) -> data_keys.Rotation:
    """Add a new current data key to the folder (the old one stays readable), recorded in the audit trail.

    The event is written first and committed only once the files are in place: a refused or failed
    rotation leaves no event, and a rotation is never left unrecorded short of the commit itself failing."""
    new_secret = ContactVault.generate_secret()
    async with ctx.pool.acquire() as conn, conn.transaction():
        old_id, new_id = data_keys.load_vault(folder).current.id_hex, DataKey(new_secret).id_hex
        await audit.append(
            conn,
            at=ctx.clock(),
            actor=_ACTOR,
            action="data_key.rotated",
            subject=new_id,
            details={"old_key_id": old_id, "new_key_id": new_id},
        )
        rotation = data_keys.add_key(folder, new_secret)
    return rotation


async def retire(ctx: BrokerContext, folder: Path) -> list[str]:
    """Remove the fallback keys once nothing stored is under any of them; RetireRefused otherwise."""
    vault = data_keys.load_vault(folder)
    if vault.current.id != ctx.keys.vault.current.id:  # pragma: no cover - one folder, read twice
        raise RetireRefused("the keys folder changed while this command ran; run it again")
    fallbacks = [k.id_hex for k in vault.fallbacks]
    if not fallbacks:
        return []
    remaining = await left(ctx)
    if any(remaining.values()):
        async with ctx.pool.acquire() as conn, conn.transaction():
            await audit.append(
                conn,
                at=ctx.clock(),
                actor=_ACTOR,
                action="data_key.retire_refused",
                subject=",".join(fallbacks),
                details={"left": remaining},
            )
        raise RetireRefused(
            f"{sum(remaining.values())} stored value(s) are not yet under the current data key "
            f"{vault.current.id_hex} ({', '.join(f'{t}: {n}' for t, n in remaining.items() if n)}); "
            "run `referral-broker keys reencrypt` until it reports 0 left, then retire"
        )
    async with ctx.pool.acquire() as conn, conn.transaction():  # the event commits only if the files went
        await audit.append(
            conn,
            at=ctx.clock(),
            actor=_ACTOR,
            action="data_key.retired",
            subject=",".join(fallbacks),
            details={"retired_key_ids": fallbacks, "current_key_id": vault.current.id_hex},
        )
        removed = data_keys.remove_fallbacks(folder)
    return removed
