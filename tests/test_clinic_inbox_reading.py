"""Reading the inbox page by page (`after`): every waiting item once, in order, without acknowledging in between."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from referral_broker.services import clinic_inbox, dispatch, intake
from referral_broker.services.context import BrokerContext
from referral_broker.store import clinics
from referral_broker.store.clinics import ClinicRow
from referral_protocol.enrolment import INBOX_START, AckRequest, InboxPage
from referral_protocol.errors import InvalidRequest
from referral_protocol.referral import ReferralRequest
from tests.conftest import enrol_clinic, referral_json


async def _waiting(broker: BrokerContext, slug: str, n: int) -> list[str]:
    """`n` referrals dispatched to the clinic, a millisecond apart; their delivery ids, oldest first."""
    ids = []
    start = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    for i in range(n):
        at = start + timedelta(milliseconds=i)
        broker.clock = lambda at=at: at  # type: ignore[misc]
        receipt = await intake.submit(broker, msgspec.convert(referral_json([slug]), ReferralRequest))
        rid = await broker.pool.fetchval("SELECT id FROM referrals WHERE reference = $1", receipt.reference)
        await dispatch.dispatch_referral(broker, rid)
        ids.append(str(await broker.pool.fetchval("SELECT id FROM deliveries WHERE referral_id = $1", rid)))
    return ids


async def _read_all(broker: BrokerContext, clinic: ClinicRow, limit: int) -> list[InboxPage]:
    pages = [await clinic_inbox.list_inbox(broker, clinic, limit, INBOX_START)]
    while pages[-1].more:
        assert pages[-1].next is not None
        pages.append(await clinic_inbox.list_inbox(broker, clinic, limit, pages[-1].next))
    assert pages[-1].next is None
    return pages


async def _notice(broker: BrokerContext, delivery_id: str, at: datetime) -> str:
    """A waiting notice about a delivery the clinic has received (so it may be served)."""
    notice_id = uuid.uuid4()
    await broker.pool.execute(
        """INSERT INTO clinic_notices (id, delivery_id, clinic_id, kind, status, envelope, envelope_sha256,
                                       recipient_keys, created_at)
           SELECT $1, d.id, d.clinic_id, 'withdrawal', 'waiting', '\\x00', '\\x00', d.recipient_keys, $3
           FROM deliveries d WHERE d.id = $2""",
        notice_id,
        uuid.UUID(delivery_id),
        at,
    )
    return str(notice_id)


@pytest.fixture
async def clinic(broker: BrokerContext) -> ClinicRow:
    await enrol_clinic(broker, "fysio-a")
    row = await clinics.by_slug(broker.pool, "fysio-a")
    assert row is not None
    return row


async def test_reading_on_serves_every_waiting_referral_once_in_order_without_acknowledging(
    broker: BrokerContext, clinic: ClinicRow
) -> None:
    ids = await _waiting(broker, "fysio-a", 7)
    pages = await _read_all(broker, clinic, 3)
    assert [len(p.items) for p in pages] == [3, 3, 1]
    assert [i.delivery_id for p in pages for i in p.items] == ids
    # Nothing was acknowledged: a reading from the start begins with the oldest again.
    again = await clinic_inbox.list_inbox(broker, clinic, 3, INBOX_START)
    assert [i.delivery_id for i in again.items] == ids[:3]


async def test_a_page_asked_without_after_is_the_first_and_names_the_next(
    broker: BrokerContext, clinic: ClinicRow
) -> None:
    await _waiting(broker, "fysio-a", 2)
    page = await clinic_inbox.list_inbox(broker, clinic, 1)
    assert page.more and page.next is not None
    assert page == await clinic_inbox.list_inbox(broker, clinic, 1, INBOX_START)


async def test_what_was_left_waiting_is_not_served_again_in_the_reading_but_first_in_the_next(
    broker: BrokerContext, clinic: ClinicRow
) -> None:
    ids = await _waiting(broker, "fysio-a", 4)
    first = await clinic_inbox.list_inbox(broker, clinic, 2, INBOX_START)
    await clinic_inbox.acknowledge(broker, clinic, AckRequest([first.items[1].delivery_id]))  # the first is left
    assert first.next is not None
    rest = await clinic_inbox.list_inbox(broker, clinic, 2, first.next)
    assert [i.delivery_id for i in rest.items] == ids[2:] and not rest.more
    anew = await clinic_inbox.list_inbox(broker, clinic, 2, INBOX_START)
    assert [i.delivery_id for i in anew.items] == [ids[0], ids[2]]


async def test_notices_follow_the_referrals_even_when_these_end_with_a_page(
    broker: BrokerContext, clinic: ClinicRow
) -> None:
    received = await _waiting(broker, "fysio-a", 1)
    await clinic_inbox.acknowledge(broker, clinic, AckRequest(received))
    at = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    notices = [await _notice(broker, received[0], at + timedelta(seconds=i)) for i in range(3)]
    ids = await _waiting(broker, "fysio-a", 2)
    pages = await _read_all(broker, clinic, 2)
    assert [[i.delivery_id for i in p.items] for p in pages] == [ids, notices[:2], notices[2:]]
    assert pages[0].next == "n"  # the referrals ended exactly here: the next page begins with the notices


@pytest.mark.parametrize(
    "after", ["", "r", "x.1.00", "r.12.not-hex", "r.1." + "0" * 31, "start " * 3, "n.-1." + "0" * 32]
)
async def test_a_place_the_broker_never_gave_is_refused(broker: BrokerContext, clinic: ClinicRow, after: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await clinic_inbox.list_inbox(broker, clinic, 10, after)
    assert refused.value.errors[0].field == "after"
