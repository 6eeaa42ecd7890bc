"""Anonymisation five calendar months (`REFERRAL_BROKER_RETENTION_MONTHS`) after a referral's last
dispatch (its creation, where nothing was ever dispatched). A referral under legal hold is skipped, and counted.
In the same run, other personal data with
limits of their own: unfetched notices, lapsed one-time codes, and customer-service messages
`REFERRAL_BROKER_CUSTOMER_SERVICE_RETENTION_DAYS` after they were closed.

Idempotent and resumable: each batch is one transaction that picks due referrals with
`FOR UPDATE SKIP LOCKED` and strips them completely, so a run killed at any moment leaves no
half-anonymised referral, two runs at once never touch the same rows, and the next run finishes
the rest. A second run over the same data finds nothing due.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec

from referral_broker.crypto.contact import ContactDecryptionFailed
from referral_broker.domain.retention import LOCAL_TIME, months_before
from referral_broker.services.context import BrokerContext
from referral_broker.store import audit, customer_messages, legal_holds, notices, retention, rights
from referral_protocol.referral import ContactCopy

log = logging.getLogger(__name__)

BATCH = 1000
#: Batches in flight at once; each holds one connection while it runs (the CLI's pool has two).
SWEEPERS = 2


@dataclass(frozen=True)
class RetentionRun:
    cutoff: datetime
    anonymised: int
    expired_deliveries: int
    batches: int
    expired_notices: int = 0
    deleted_codes: int = 0
    held: int = 0  # due, but under legal hold: skipped
    deleted_customer_messages: int = 0


async def anonymise_expired(
    ctx: BrokerContext,
    *,
    now: datetime | None = None,
    batch_size: int = BATCH,
    progress: Callable[[int], None] | None = None,
) -> RetentionRun:
    """Anonymise every referral due at `now`; record the run in the audit trail."""
    now = now or ctx.clock()
    cutoff = months_before(now, ctx.settings.retention_months)
    anonymised = expired = batches = 0

    async def sweep() -> None:
        nonlocal anonymised, expired, batches
        while True:
            async with ctx.pool.acquire() as conn, conn.transaction():
                due = await retention.due_batch(conn, cutoff, batch_size)
                if not due:
                    return
                categories = [surviving_category(ctx, d.id.bytes, d.contact_ct) for d in due]
                expired += await retention.anonymise(conn, [d.id for d in due], categories, now)
            anonymised += len(due)
            batches += 1
            if progress is not None:
                progress(anonymised)

    # Batches in parallel on separate connections: SKIP LOCKED gives each its own rows, and while one
    # waits for PostgreSQL the other decrypts, so the sweep uses both the database's and our own time.
    await asyncio.gather(*(sweep() for _ in range(SWEEPERS)))
    async with ctx.pool.acquire() as conn, conn.transaction():
        # Other personal data with limits of their own: notices nobody fetched in the retention period,
        # and one-time codes and their sessions once they can no longer be used.
        expired_notices = await notices.expire_older_than(conn, cutoff)
        lapsed_codes = await rights.delete_lapsed(conn, now)
        held = await legal_holds.held_and_due(conn, cutoff)
        # Customer-service messages (and their answers) a set number of days after they were closed.
        closed_cutoff = now - timedelta(days=ctx.settings.customer_service_retention_days)
        deleted_messages = await customer_messages.delete_closed_before(conn, closed_cutoff)
        forgotten_links = await rights.forget_erased_links_before(conn, cutoff.astimezone(LOCAL_TIME).date())
        await audit.append(
            conn,
            at=now,
            actor="retention",
            action="retention.run",
            details={
                "cutoff": cutoff.isoformat(),
                "anonymised": anonymised,
                "expired_deliveries": expired,
                "batches": batches,
                "expired_notices": expired_notices,
                "deleted_codes": lapsed_codes,
                "held": held,
                "deleted_customer_messages": deleted_messages,
                "forgotten_erased_links": forgotten_links,
            },
        )
    log.info(
        "retention run: %d referrals anonymised, %d undelivered deliveries expired, %d notices expired, "
        "%d one-time codes deleted, %d closed customer-service messages deleted, %d due referrals kept under legal "
        "hold",
        anonymised, expired, expired_notices, lapsed_codes, deleted_messages, held,
    )  # fmt: skip
    return RetentionRun(
        cutoff=cutoff,
        anonymised=anonymised,
        expired_deliveries=expired,
        batches=batches,
        expired_notices=expired_notices,
        deleted_codes=lapsed_codes,
        held=held,
        deleted_customer_messages=deleted_messages,
    )


def surviving_category(ctx: BrokerContext, row_id: bytes, contact_ct: bytes | None) -> str | None:
    """The need's category, the one fact of the contact copy that survives, for anonymous statistics."""
    if contact_ct is None:
        return None
    try:
        copy = msgspec.json.decode(ctx.keys.vault.decrypt(contact_ct, bound_to=row_id), type=ContactCopy)
    except (ContactDecryptionFailed, msgspec.DecodeError, msgspec.ValidationError):
        # A copy that does not decrypt still has to go; the statistics lose one category.
        log.warning("a stored copy did not decrypt during anonymisation; its category is not kept")
        return None
    return copy.category
