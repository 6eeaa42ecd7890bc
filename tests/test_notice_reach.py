"""Notices only to clinics that had the referral, and a notice travels with its referral (issue 19 items 4
and 5; decisions 0139, 0140) — the rules, the paging, and the race between a clinic's listing and a
patient's withdrawal or correction, against the real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import msgspec

from referral_broker.services import clinic_inbox, dispatch, intake, manage, rights
from referral_broker.services.context import BrokerContext
from referral_broker.store import clinics, deliveries
from referral_broker.store.clinics import ClinicRow
from referral_protocol.enrolment import AckRequest, InboxPage
from referral_protocol.envelope import open_envelope
from referral_protocol.notice import NoticePayload
from referral_protocol.referral import ReferralPayload, ReferralRequest
from tests.conftest import EnrolledClinic, enrol_clinic, referral_json
from tests.test_rights import Outbox, _session

CORRECTED = ("Kari Nordmann", "kari.ny@example.no", "913 45 678", date(1990, 5, 17))


async def _submit(broker: BrokerContext, slugs: list[str], email: str = "kari@example.no") -> tuple[str, str]:
    """(reference, manage token) of a new referral, dispatched."""
    receipt = await intake.submit(
        broker, msgspec.convert(referral_json(slugs, email=email, name="Kari Nordmann"), ReferralRequest)
    )
    rid = await broker.pool.fetchval("SELECT id FROM referrals WHERE reference = $1", receipt.reference)
    await dispatch.dispatch_referral(broker, rid)
    return receipt.reference, receipt.manage_url.rsplit("/", 1)[1]


async def _row(broker: BrokerContext, slug: str) -> ClinicRow:
    row = await clinics.by_slug(broker.pool, slug)
    assert row is not None
    return row


def _opened(page: InboxPage, clinic: EnrolledClinic, broker: BrokerContext) -> list[tuple[str, Any]]:
    """(kind, payload) of each item, in the page's order."""
    out: list[tuple[str, Any]] = []
    for item in page.items:
        body, plaintext = open_envelope(
            item.envelope,
            broker_key=broker.keys.signer.public_key,
            clinic=clinic.slug,
            private_keys=list(clinic.secrets.encryption_secrets),
        )
        payload_type = ReferralPayload if body.kind == "referral" else NoticePayload
        out.append((body.kind, msgspec.json.decode(plaintext, type=payload_type)))
    return out


async def _pull_all(broker: BrokerContext, clinic: EnrolledClinic, limit: int = 100) -> list[tuple[str, Any]]:
    """Read the whole inbox page by page as the clinic tool does, acknowledging each page."""
    row = await _row(broker, clinic.slug)
    got: list[tuple[str, Any]] = []
    after: str | None = None
    while True:
        page = await clinic_inbox.list_inbox(broker, row, limit, after)
        got += _opened(page, clinic, broker)
        if page.items:
            await clinic_inbox.acknowledge(broker, row, AckRequest([i.delivery_id for i in page.items]))
        if not page.more:
            return got
        after = page.next


async def test_withdrawn_and_erased_before_one_clinic_fetched_it_tells_only_the_other(
    broker: BrokerContext,
) -> None:
    """User case (a): the clinic that never fetched the referral gets no withdrawal and no erasure notice."""
    a = await enrol_clinic(broker, "fysio-a")
    b = await enrol_clinic(broker, "fysio-b")
    outbox = Outbox()
    reference, token = await _submit(broker, ["fysio-a", "fysio-b"])
    assert [k for k, _ in await _pull_all(broker, a)] == ["referral"]  # b has not pulled

    withdrawal = await manage.withdraw(broker, token)
    assert withdrawal is not None
    assert (withdrawal.reach.told, withdrawal.reach.not_told) == (["Klinikk fysio-a"], ["Klinikk fysio-b"])
    session = await _session(broker, outbox, "email", "kari@example.no")
    [exported] = msgspec.json.decode(await rights.export(broker, session))["referrals"]
    fetched = {d["clinic_name"]: d["fetched_by_clinic_at"] is not None for d in exported["deliveries"]}
    assert fetched == {"Klinikk fysio-a": True, "Klinikk fysio-b": False}
    assert [(n["clinic_name"], n["kind"]) for n in exported["notices_to_clinics"]] == [
        ("Klinikk fysio-a", "withdrawal")
    ]
    erased = await rights.erase(broker, session, reference)
    assert (erased.reach.told, erased.reach.not_told) == (["Klinikk fysio-a"], ["Klinikk fysio-b"])

    # the unfetched withdrawal notice expired with the erasure (it is superseded); a gets the erasure
    assert [k for k, _ in await _pull_all(broker, a)] == ["erasure"]
    assert await _pull_all(broker, b) == []  # nothing: it never had it
    kinds_by_clinic = await broker.pool.fetch(
        """SELECT c.slug, n.kind, n.status FROM clinic_notices n JOIN clinics c ON c.id = n.clinic_id
           ORDER BY n.created_at"""
    )
    assert [(r["slug"], r["kind"], r["status"]) for r in kinds_by_clinic] == [
        ("fysio-a", "withdrawal", "expired"),
        ("fysio-a", "erasure", "acknowledged"),
    ]


async def test_a_correction_made_while_the_referral_waited_comes_with_it(broker: BrokerContext) -> None:
    """User case (b): the clinic's first pull files the referral and, right after it, the correction."""
    b = await enrol_clinic(broker, "fysio-b")
    reference, _ = await _submit(broker, ["fysio-b"])
    session = await _session(broker, Outbox(), "email", "kari@example.no")
    corrected = rights.check_correction(*CORRECTED, today=date(2026, 11, 22))
    done = await rights.rectify(broker, session, reference, corrected)
    assert (done.reach.told, done.reach.with_referral) == ([], ["Klinikk fysio-b"])

    row = await _row(broker, "fysio-b")
    first = _opened(await clinic_inbox.list_inbox(broker, row, 100), b, broker)
    assert [k for k, _ in first] == ["referral", "correction"]
    assert first[0][1].patient.email == "kari@example.no"  # sealed at intake, before the correction
    assert first[1][1].patient.email == "kari.ny@example.no"
    assert first[1][1].delivery_id == first[0][1].delivery_id  # about this very copy


async def test_a_correction_before_dispatch_also_travels_with_the_referral(broker: BrokerContext) -> None:
    b = await enrol_clinic(broker, "fysio-b")
    receipt = await intake.submit(
        broker, msgspec.convert(referral_json(["fysio-b"], email="kari@example.no"), ReferralRequest)
    )
    session = await _session(broker, Outbox(), "email", "kari@example.no")
    corrected = rights.check_correction(*CORRECTED, today=date(2026, 11, 22))
    await rights.rectify(broker, session, receipt.reference, corrected)
    row = await _row(broker, "fysio-b")
    assert (await clinic_inbox.list_inbox(broker, row, 100)).items == []  # the notice never goes ahead
    rid = await broker.pool.fetchval("SELECT id FROM referrals WHERE reference = $1", receipt.reference)
    await dispatch.dispatch_referral(broker, rid)
    assert [k for k, _ in await _pull_all(broker, b)] == ["referral", "correction"]
    assert await _pull_all(broker, b) == []


async def test_a_referral_and_its_notices_are_never_split_across_pages(broker: BrokerContext) -> None:
    b = await enrol_clinic(broker, "fysio-b")
    first, _ = await _submit(broker, ["fysio-b"], email="ola@example.no")
    second, _ = await _submit(broker, ["fysio-b"], email="kari@example.no")
    session = await _session(broker, Outbox(), "email", "kari@example.no")
    await rights.rectify(broker, session, second, rights.check_correction(*CORRECTED, today=date(2026, 11, 22)))
    row = await _row(broker, "fysio-b")

    page = await clinic_inbox.list_inbox(broker, row, 2)  # room for two: the second referral's pair does not fit
    assert [k for k, _ in _opened(page, b, broker)] == ["referral"] and page.more and page.next
    rest = await clinic_inbox.list_inbox(broker, row, 2, page.next)
    assert [(k, p.reference) for k, p in _opened(rest, b, broker)] == [("referral", second), ("correction", second)]

    one = await clinic_inbox.list_inbox(broker, row, 1, page.next)  # a page of one still holds the pair
    assert [k for k, _ in _opened(one, b, broker)] == ["referral", "correction"]

    # Only the copies an answer listed count as served.
    served = await broker.pool.fetch("SELECT served_at FROM deliveries ORDER BY dispatched_at")
    assert all(r["served_at"] is not None for r in served)
    assert first != second


async def test_only_what_a_page_shows_counts_as_served(broker: BrokerContext) -> None:
    await enrol_clinic(broker, "fysio-b")
    for n in range(3):
        await _submit(broker, ["fysio-b"], email=f"p{n}@example.no")
    row = await _row(broker, "fysio-b")
    page = await clinic_inbox.list_inbox(broker, row, 2)
    assert len(page.items) == 2 and page.more
    served = await broker.pool.fetch("SELECT id, served_at FROM deliveries ORDER BY dispatched_at, id")
    assert [r["served_at"] is not None for r in served] == [True, True, False]  # the probe row is not served


async def test_a_withdrawal_waiting_for_a_listing_tells_the_clinic_it_served(broker: BrokerContext) -> None:
    """The listing holds the copy's row when the withdrawal comes: the withdrawal waits, then sees it served."""
    a = await enrol_clinic(broker, "fysio-a")
    _, token = await _submit(broker, ["fysio-a"])
    row = await _row(broker, "fysio-a")
    async with broker.pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        listed = await deliveries.inbox(conn, row.id, 10)  # what list_inbox does, its transaction held open
        await deliveries.mark_served(conn, [r.id for r in listed], broker.clock())
        withdrawing = asyncio.create_task(manage.withdraw(broker, token))
        await asyncio.sleep(0.3)
        assert not withdrawing.done()  # blocked on the row lock
        await tx.commit()
    withdrawal = await withdrawing
    assert withdrawal is not None and withdrawal.reach.told == ["Klinikk fysio-a"]
    assert [k for k, _ in await _pull_all(broker, a)] == ["withdrawal"]


async def test_a_listing_waiting_for_a_withdrawal_does_not_serve_the_cancelled_copy(broker: BrokerContext) -> None:
    """The withdrawal holds the copy's row when the listing comes: the listing waits, then skips it."""
    a = await enrol_clinic(broker, "fysio-a")
    reference, _ = await _submit(broker, ["fysio-a"])
    rid = await broker.pool.fetchval("SELECT id FROM referrals WHERE reference = $1", reference)
    row = await _row(broker, "fysio-a")
    async with broker.pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        done = await manage.withdraw_locked(broker, conn, rid, reference, first_time=True, actor="test")
        assert done.planned.reach.not_told == ["Klinikk fysio-a"]
        listing = asyncio.create_task(clinic_inbox.list_inbox(broker, row, 10))
        await asyncio.sleep(0.3)
        assert not listing.done()  # blocked on the row lock
        await tx.commit()
    page = await listing
    assert page.items == []
    assert await _pull_all(broker, a) == []
    assert await broker.pool.fetchval("SELECT served_at FROM deliveries WHERE referral_id = $1", rid) is None


async def test_listing_and_withdrawal_at_once_tell_exactly_the_clinics_served(broker: BrokerContext) -> None:
    """Many rounds of a listing and a withdrawal started together: a withdrawal notice exists for a copy
    if and only if an answer listed that copy."""
    a = await enrol_clinic(broker, "fysio-a")
    row = await _row(broker, "fysio-a")
    listed: set[str] = set()
    withdrawn: list[uuid.UUID] = []
    for n in range(16):
        _, token = await _submit(broker, ["fysio-a"], email=f"p{n}@example.no")
        page, withdrawal = await asyncio.gather(
            clinic_inbox.list_inbox(broker, row, 100), manage.withdraw(broker, token)
        )
        assert withdrawal is not None
        listed |= {i.delivery_id for i in page.items}
        withdrawn.append(withdrawal.view.referral.id)
    told = {
        str(r["delivery_id"])
        for r in await broker.pool.fetch("SELECT delivery_id FROM clinic_notices WHERE kind = 'withdrawal'")
    }
    copies = await broker.pool.fetch("SELECT id, served_at FROM deliveries")
    served = {str(r["id"]) for r in copies if r["served_at"] is not None}
    listed &= {str(r["id"]) for r in copies}  # the referrals listed (the pages also held earlier notices)
    assert told == served == listed
    assert len(withdrawn) == 16
    # Each told clinic receives its notice; nothing about a copy it never saw.
    notices_pulled = [p.delivery_id for k, p in await _pull_all(broker, a) if k == "withdrawal"]
    assert set(notices_pulled) == listed


async def test_listing_and_correction_at_once_lose_nothing_and_never_put_a_notice_first(
    broker: BrokerContext,
) -> None:
    b = await enrol_clinic(broker, "fysio-b")
    row = await _row(broker, "fysio-b")
    corrected = rights.check_correction(*CORRECTED, today=date(2026, 11, 22))
    for n in range(8):
        email = f"p{n}@example.no"
        reference, _ = await _submit(broker, ["fysio-b"], email=email)
        session = await _session(broker, Outbox(), "email", email)
        page, _ = await asyncio.gather(
            clinic_inbox.list_inbox(broker, row, 100), rights.rectify(broker, session, reference, corrected)
        )
        got = _opened(page, b, broker)
        if got:
            await clinic_inbox.acknowledge(broker, row, AckRequest([i.delivery_id for i in page.items]))
        later = await _pull_all(broker, b)
        received = [(k, p.reference) for k, p in got + later]
        # the referral once, its correction once, the referral first
        assert received == [("referral", reference), ("correction", reference)]


async def test_the_migration_counts_existing_copies_as_served_where_their_clinic_may_have_listed_them(
    broker: BrokerContext,
) -> None:
    """0012 on rows from before it: acknowledged, and waiting or cancelled copies whose clinic pulled after
    they became available, count as served; a copy its clinic never pulled, or never dispatched, does not."""
    a = await enrol_clinic(broker, "fysio-a")
    await enrol_clinic(broker, "fysio-b")
    acknowledged, _ = await _submit(broker, ["fysio-a"], email="p1@example.no")
    await _pull_all(broker, a)
    listed, _ = await _submit(broker, ["fysio-a"], email="p2@example.no")
    cancelled, token = await _submit(broker, ["fysio-a"], email="p3@example.no")
    await clinic_inbox.list_inbox(broker, await _row(broker, "fysio-a"), 10)  # listed, not acknowledged
    await manage.withdraw(broker, token)
    never_pulled, _ = await _submit(broker, ["fysio-b"], email="p4@example.no")
    queued = (
        await intake.submit(broker, msgspec.convert(referral_json(["fysio-a"], email="p5@example.no"), ReferralRequest))
    ).reference

    await broker.pool.execute("UPDATE deliveries SET served_at = NULL")  # as before 0012
    migration = (Path(deliveries.__file__).parent / "migrations" / "0012_delivery_served_at.sql").read_text(
        encoding="utf-8"
    )
    backfill = migration[migration.index("ALTER TABLE") :].split(";", 1)[1]  # what follows the new column
    await broker.pool.execute(backfill)

    served = {
        r["reference"]: (r["status"], r["served_at"] is not None)
        for r in await broker.pool.fetch(
            "SELECT r.reference, d.status, d.served_at FROM deliveries d JOIN referrals r ON r.id = d.referral_id"
        )
    }
    assert served == {
        acknowledged: ("acknowledged", True),
        listed: ("available", True),
        cancelled: ("cancelled", True),
        never_pulled: ("available", False),
        queued: ("queued", False),
    }
