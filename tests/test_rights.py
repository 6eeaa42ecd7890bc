"""The patient's rights through a one-time code (issue 4): codes, sessions, access, rectification,
erasure, withdrawal, and the sealed notices clinics receive — against the real PostgreSQL."""

from __future__ import annotations

import hashlib
import uuid
from datetime import date, timedelta
from typing import Any

import msgspec
import pytest

from referral_broker.services import clinic_inbox, clinic_status, dispatch, intake, manage, retention, rights
from referral_broker.services.context import BrokerContext
from referral_broker.services.ports import CodeNotSent
from referral_broker.store import clinics, notices
from referral_protocol.enrolment import AckRequest, Refusal, RefusalRequest
from referral_protocol.envelope import open_envelope
from referral_protocol.errors import InvalidRequest
from referral_protocol.notice import NOTICE_PAYLOAD_FORMAT, NoticePayload
from referral_protocol.referral import ContactCopy, Patient, ReferralRequest
from tests.conftest import EnrolledClinic, enrol_clinic, referral_json

SECRET_NEED = "Canary-need-7Q2 vondt i skulderen"


class Outbox:
    """A CodeSender that keeps what it was asked to send, or fails when told to."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []
        self.fail = False

    async def send(self, channel: str, destination: str, code: str, minutes: int) -> None:
        if self.fail:
            raise CodeNotSent("SMTP 451")
        self.sent.append((channel, destination, code))

    @property
    def last_code(self) -> str:
        return self.sent[-1][2]


async def _submit(broker: BrokerContext, slugs: list[str], **patient: str) -> str:
    request = msgspec.convert(referral_json(slugs, description=SECRET_NEED, **patient), ReferralRequest)
    receipt = await intake.submit(broker, request)
    return receipt.reference


async def _referral_id(broker: BrokerContext, reference: str) -> uuid.UUID:
    rid: uuid.UUID = await broker.pool.fetchval("SELECT id FROM referrals WHERE reference = $1", reference)
    return rid


async def _dispatch(broker: BrokerContext, reference: str) -> None:
    await dispatch.dispatch_referral(broker, await _referral_id(broker, reference))


async def _pull_and_ack(broker: BrokerContext, clinic: EnrolledClinic) -> list[tuple[str, Any]]:
    """What a clinic would pull now, opened with its keys; everything acknowledged. (kind, payload bytes)."""
    row = await clinics.by_slug(broker.pool, clinic.slug)
    assert row is not None
    page = await clinic_inbox.list_inbox(broker, row, 100)
    opened = []
    for item in page.items:
        body, plaintext = open_envelope(
            item.envelope,
            broker_key=broker.keys.signer.public_key,
            clinic=clinic.slug,
            private_keys=list(clinic.secrets.encryption_secrets),
        )
        assert body.delivery_id == item.delivery_id
        opened.append((body.kind, plaintext))
    if page.items:
        result = await clinic_inbox.acknowledge(broker, row, AckRequest([i.delivery_id for i in page.items]))
        assert result.unknown == []
    return opened


async def _session(broker: BrokerContext, outbox: Outbox, channel: str, value: str) -> rights.RightsSession:
    code_id = await rights.request_code(broker, outbox, channel, value)
    _, session = await rights.verify_code(broker, str(code_id), outbox.last_code)
    return session


@pytest.fixture
def outbox() -> Outbox:
    return Outbox()


async def test_a_code_opens_exactly_the_referrals_of_that_address(broker: BrokerContext, outbox: Outbox) -> None:
    await enrol_clinic(broker, "fysio-a")
    mine = await _submit(broker, ["fysio-a"], email="Kari@Example.no")
    other = await _submit(broker, ["fysio-a"], email="ola@example.no", phone="913 45 678")

    session = await _session(broker, outbox, "email", " kari@EXAMPLE.no ")
    assert outbox.sent[-1][:2] == ("email", "kari@example.no")
    assert [v.reference for v in await rights.overview(broker, session)] == [mine]

    by_phone = await _session(broker, outbox, "phone", "+47 41234567")  # the same number, typed another way
    assert [v.reference for v in await rights.overview(broker, by_phone)] == [mine]

    with pytest.raises(rights.NotLinked):
        await rights.find(broker, session, other)
    with pytest.raises(rights.NotLinked):
        await rights.erase(broker, session, other)
    # The database holds neither the address nor the code.
    row = await broker.pool.fetchrow("SELECT * FROM rights_codes ORDER BY created_at LIMIT 1")
    assert b"kari" not in b"".join(v if isinstance(v, bytes) else str(v).encode() for v in row.values())
    assert outbox.sent[0][2].encode() not in b"".join(v for v in row.values() if isinstance(v, bytes))


async def test_an_address_with_nothing_gets_a_code_like_any_other(broker: BrokerContext, outbox: Outbox) -> None:
    session = await _session(broker, outbox, "email", "nobody@example.no")
    assert await rights.overview(broker, session) == []


async def test_wrong_codes_burn_the_code_and_lapsed_ones_are_refused(broker: BrokerContext, outbox: Outbox) -> None:
    code_id = await rights.request_code(broker, outbox, "email", "kari@example.no")
    right = outbox.last_code
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for _ in range(rights.MAX_CODE_ATTEMPTS):
        with pytest.raises(rights.CodeRefused):
            await rights.verify_code(broker, str(code_id), wrong)
    with pytest.raises(rights.CodeRefused):  # the right code, too late
        await rights.verify_code(broker, str(code_id), right)

    code_id = await rights.request_code(broker, outbox, "email", "kari@example.no")
    later = broker.clock() + timedelta(minutes=broker.settings.rights_code_minutes, seconds=1)
    broker.clock = lambda: later
    with pytest.raises(rights.CodeRefused):
        await rights.verify_code(broker, str(code_id), outbox.last_code)

    with pytest.raises(rights.CodeRefused):
        await rights.verify_code(broker, "not-an-id", "123456")


async def test_a_code_is_used_once_and_the_session_lapses(broker: BrokerContext, outbox: Outbox) -> None:
    code_id = await rights.request_code(broker, outbox, "phone", "412 34 567")
    token, _ = await rights.verify_code(broker, str(code_id), f" {outbox.last_code[:3]} {outbox.last_code[3:]} ")
    assert await rights.session_of(broker, token) is not None
    with pytest.raises(rights.CodeRefused):
        await rights.verify_code(broker, str(code_id), outbox.last_code)
    start = broker.clock()
    broker.clock = lambda: start + timedelta(minutes=broker.settings.rights_session_minutes, seconds=1)
    assert await rights.session_of(broker, token) is None
    broker.clock = lambda: start
    await rights.end_session(broker, token)
    assert await rights.session_of(broker, token) is None
    assert await rights.session_of(broker, None) is None


async def test_a_session_is_stored_only_as_the_sha256_of_its_token(broker: BrokerContext, outbox: Outbox) -> None:
    # The same bytes as the sessions already in a database: a change here would sign every patient out.
    code_id = await rights.request_code(broker, outbox, "email", "kari@example.no")
    token, _ = await rights.verify_code(broker, str(code_id), outbox.last_code)
    stored = await broker.pool.fetchval("SELECT session_hash FROM rights_codes WHERE id = $1", code_id)
    assert bytes(stored) == hashlib.sha256(token.encode()).digest()
    assert await rights.session_of(broker, token) is not None


async def test_codes_per_address_are_limited_and_a_failed_send_keeps_nothing(
    broker: BrokerContext, outbox: Outbox
) -> None:
    for _ in range(broker.settings.rights_codes_per_hour):
        await rights.request_code(broker, outbox, "email", "kari@example.no")
    with pytest.raises(rights.TooManyCodes):
        await rights.request_code(broker, outbox, "email", "KARI@example.no")
    await rights.request_code(broker, outbox, "email", "ola@example.no")  # another address is not limited

    outbox.fail = True
    before = await broker.pool.fetchval("SELECT count(*) FROM rights_codes")
    with pytest.raises(CodeNotSent):
        await rights.request_code(broker, outbox, "email", "per@example.no")
    assert await broker.pool.fetchval("SELECT count(*) FROM rights_codes") == before

    with pytest.raises(InvalidRequest) as bad:
        await rights.request_code(broker, outbox, "phone", "12")
    assert bad.value.errors[0].field == "phone"


async def test_export_holds_everything_kept_and_nothing_sealed(broker: BrokerContext, outbox: Outbox) -> None:
    await enrol_clinic(broker, "fysio-a")
    await enrol_clinic(broker, "fysio-b")
    reference = await _submit(broker, ["fysio-a", "fysio-b"])
    await _dispatch(broker, reference)
    session = await _session(broker, outbox, "email", "kari@example.no")

    document = msgspec.json.decode(await rights.export(broker, session))
    assert document["format"] == rights.EXPORT_FORMAT
    assert "cannot read" in document["explanation"]["en"]
    [referral] = document["referrals"]
    assert referral["reference"] == reference
    assert referral["contact_details"]["name"] == "Kari Nordmann"
    assert referral["contact_details"]["phone"] == "+4741234567"
    assert referral["consent"]["version"] == "2026-11-01"
    assert sorted(d["clinic"] for d in referral["deliveries"]) == ["fysio-a", "fysio-b"]
    assert {d["status"] for d in referral["deliveries"]} == {"available"}
    assert SECRET_NEED not in msgspec.json.encode(document).decode()
    actions = await broker.pool.fetch("SELECT action, details::text FROM audit_events ORDER BY id")
    assert "rights.exported" in [a["action"] for a in actions]
    assert not any("kari" in a["details"].lower() for a in actions)


async def test_a_correction_reaches_every_clinic_after_its_referral(broker: BrokerContext, outbox: Outbox) -> None:
    a = await enrol_clinic(broker, "fysio-a")
    b = await enrol_clinic(broker, "fysio-b")
    reference = await _submit(broker, ["fysio-a", "fysio-b"])
    await _dispatch(broker, reference)
    assert [k for k, _ in await _pull_and_ack(broker, a)] == ["referral"]  # a has it; b has not pulled yet

    session = await _session(broker, outbox, "email", "kari@example.no")
    corrected = rights.check_correction(
        "Kari Nordmann-Berg", "kari.berg@example.no", "913 45 678", date(1990, 5, 17), today=date(2026, 11, 22)
    )
    done = await rights.rectify(broker, session, reference, corrected)
    assert done.changed == ["name", "email", "phone"]
    assert done.notices == 2
    assert (done.reach.told, done.reach.with_referral) == (
        ["Klinikk fysio-a"],
        ["Klinikk fysio-b"],
    )  # b has not received it
    assert not done.still_linked  # the confirmed address itself changed

    # The broker's copy and its indexes follow the correction.
    rid = await _referral_id(broker, reference)
    ct = await broker.pool.fetchval("SELECT contact_ct FROM referrals WHERE id = $1", rid)
    copy = msgspec.json.decode(broker.keys.vault.decrypt(ct, bound_to=rid.bytes), type=ContactCopy)
    assert (copy.name, copy.email, copy.phone, copy.category) == (
        "Kari Nordmann-Berg",
        "kari.berg@example.no",
        "+4791345678",
        "physiotherapy",
    )
    assert await rights.overview(broker, session) == []
    new_session = await _session(broker, outbox, "email", "kari.berg@example.no")
    assert [v.reference for v in await rights.overview(broker, new_session)] == [reference]

    # a gets the notice at once; b gets its referral and, after it in the same answer, the notice.
    [(kind, plaintext)] = await _pull_and_ack(broker, a)
    notice = _notice(plaintext)
    assert kind == "correction"
    assert notice.format == NOTICE_PAYLOAD_FORMAT
    assert notice.reference == reference and notice.clinic == "fysio-a"
    assert notice.patient is not None and notice.patient.email == "kari.berg@example.no"
    kinds_b = await _pull_and_ack(broker, b)
    assert [k for k, _ in kinds_b] == ["referral", "correction"]  # decision 0140: they travel together
    assert _notice(kinds_b[1][1]).patient.email == "kari.berg@example.no"  # type: ignore[union-attr]
    assert await _pull_and_ack(broker, b) == []
    states = await broker.pool.fetch("SELECT id, status, envelope FROM clinic_notices")
    assert {(s["status"], s["envelope"]) for s in states} == {("acknowledged", None)}
    row_b = await clinics.by_slug(broker.pool, "fysio-b")
    assert row_b is not None
    ids = [str(s["id"]) for s in states]
    again = await clinic_inbox.acknowledge(broker, row_b, AckRequest(ids))  # one is b's, one is a's
    assert len(again.acknowledged) == 1 and len(again.unknown) == 1

    # The same correction again changes nothing and tells no one.
    assert (await rights.rectify(broker, new_session, reference, corrected)).notices == 0


def _notice(plaintext: bytes) -> NoticePayload:
    return msgspec.json.decode(plaintext, type=NoticePayload)


async def test_erasure_keeps_only_an_anonymous_remainder_and_tells_who_may_hold_it(
    broker: BrokerContext, outbox: Outbox
) -> None:
    a = await enrol_clinic(broker, "fysio-a")
    b = await enrol_clinic(broker, "fysio-b")
    await enrol_clinic(broker, "fysio-c")
    reference = await _submit(broker, ["fysio-a", "fysio-b"])
    await _dispatch(broker, reference)
    await _pull_and_ack(broker, a)  # a received it
    row_b = await clinics.by_slug(broker.pool, "fysio-b")
    assert row_b is not None
    assert len((await clinic_inbox.list_inbox(broker, row_b, 10)).items) == 1  # b fetched it, not acknowledged
    untouched = await _submit(broker, ["fysio-c"])  # never dispatched: fysio-c never saw it
    session = await _session(broker, outbox, "email", "kari@example.no")

    done = await rights.erase(broker, session, reference)
    assert (done.cancelled, done.notices) == (1, 2)
    assert (done.reach.told, done.reach.not_told) == (["Klinikk fysio-a", "Klinikk fysio-b"], [])
    done_c = await rights.erase(broker, session, untouched)
    assert (done_c.cancelled, done_c.notices) == (1, 0)
    assert (done_c.reach.told, done_c.reach.not_told) == ([], ["Klinikk fysio-c"])

    row = await broker.pool.fetchrow(
        """SELECT * FROM referrals WHERE id = (SELECT referral_id FROM deliveries d JOIN clinics c
           ON c.id = d.clinic_id WHERE c.slug = 'fysio-a')"""
    )
    for column in ("contact_ct", "email_bidx", "phone_bidx", "manage_token_hash", "idempotency_hash", "reference"):
        assert row[column] is None, column
    assert row["erased_at"] is not None and row["anonymised_at"] is not None
    assert row["category"] == "physiotherapy"  # for statistics
    deliveries = await broker.pool.fetch("SELECT status, envelope FROM deliveries WHERE referral_id = $1", row["id"])
    assert sorted(d["status"] for d in deliveries) == ["acknowledged", "cancelled"]
    assert all(d["envelope"] is None for d in deliveries)
    assert await rights.overview(broker, session) == []

    [(kind_a, plain_a)] = await _pull_and_ack(broker, a)
    [(kind_b, plain_b)] = await _pull_and_ack(broker, b)
    assert kind_a == kind_b == "erasure"
    assert _notice(plain_a).reference == _notice(plain_b).reference == reference
    assert _notice(plain_a).patient is None

    events = await broker.pool.fetch("SELECT action, details::text FROM audit_events WHERE action = 'rights.erased'")
    assert len(events) == 2
    assert not any(reference in e["details"] or "kari" in e["details"].lower() for e in events)


async def test_withdrawal_by_code_and_by_link_tells_the_clinics(broker: BrokerContext, outbox: Outbox) -> None:
    a = await enrol_clinic(broker, "fysio-a")
    reference = await _submit(broker, ["fysio-a"])
    await _dispatch(broker, reference)
    await _pull_and_ack(broker, a)
    session = await _session(broker, outbox, "email", "kari@example.no")
    stopped = await rights.withdraw(broker, session, reference)
    assert (stopped.cancelled, stopped.notices) == (0, 1)
    again = await rights.withdraw(broker, session, reference)
    assert (again.cancelled, again.notices) == (0, 0)
    [(kind, plaintext)] = await _pull_and_ack(broker, a)
    assert kind == "withdrawal" and _notice(plaintext).reference == reference
    [view] = await rights.overview(broker, session)
    assert view.withdrawn_at is not None
    assert [n.kind for n in view.notices] == ["withdrawal"]

    # By the manage link: a copy the clinic fetched but has not acknowledged is cancelled, and its clinic
    # is told (decision 0139: it was served).
    request = msgspec.convert(referral_json(["fysio-a"], email="per@example.no"), ReferralRequest)
    receipt = await intake.submit(broker, request)
    await _dispatch(broker, receipt.reference)
    row = await clinics.by_slug(broker.pool, "fysio-a")
    assert row is not None
    assert len((await clinic_inbox.list_inbox(broker, row, 10)).items) == 1  # fetched, never acknowledged
    token = receipt.manage_url.rsplit("/", 1)[1]
    withdrawal = await manage.withdraw(broker, token)
    assert withdrawal is not None and len(withdrawal.cancelled) == 1
    assert withdrawal.reach.told == ["Klinikk fysio-a"]
    [(kind, plaintext)] = await _pull_and_ack(broker, a)
    assert kind == "withdrawal" and _notice(plaintext).reference == receipt.reference

    # A copy cancelled while still unserved: the clinic never had it, and is not told.
    request = msgspec.convert(referral_json(["fysio-a"], email="eva@example.no"), ReferralRequest)
    receipt = await intake.submit(broker, request)
    await _dispatch(broker, receipt.reference)
    withdrawal = await manage.withdraw(broker, receipt.manage_url.rsplit("/", 1)[1])
    assert withdrawal is not None and len(withdrawal.cancelled) == 1
    assert (withdrawal.reach.told, withdrawal.reach.not_told) == ([], ["Klinikk fysio-a"])
    assert await _pull_and_ack(broker, a) == []


async def test_notices_follow_referrals_across_pages(broker: BrokerContext, outbox: Outbox) -> None:
    a = await enrol_clinic(broker, "fysio-a")
    first = await _submit(broker, ["fysio-a"])
    await _dispatch(broker, first)
    await _pull_and_ack(broker, a)
    session = await _session(broker, outbox, "email", "kari@example.no")
    await rights.withdraw(broker, session, first)
    for _ in range(3):
        await _dispatch(broker, await _submit(broker, ["fysio-a"], email="ola@example.no"))
    row = await clinics.by_slug(broker.pool, "fysio-a")
    assert row is not None
    page = await clinic_inbox.list_inbox(broker, row, 3)
    assert len(page.items) == 3 and page.more  # three referrals; the notice waits for the next page
    page = await clinic_inbox.list_inbox(broker, row, 4)
    assert len(page.items) == 4 and not page.more
    # Acknowledging an id of a notice or delivery that is not this clinic's says "unknown".
    result = await clinic_inbox.acknowledge(broker, row, AckRequest([str(uuid.uuid4())]))
    assert len(result.unknown) == 1


async def test_retention_deletes_lapsed_codes_and_expires_unfetched_notices(
    broker: BrokerContext, outbox: Outbox
) -> None:
    a = await enrol_clinic(broker, "fysio-a")
    reference = await _submit(broker, ["fysio-a"])
    await _dispatch(broker, reference)
    await _pull_and_ack(broker, a)
    session = await _session(broker, outbox, "email", "kari@example.no")
    await rights.erase(broker, session, reference)  # a notice waits for fysio-a, which never pulls again
    await rights.request_code(broker, outbox, "email", "ola@example.no")  # never used

    now = broker.clock()
    soon = await retention.anonymise_expired(broker, now=now + timedelta(hours=2))
    assert (soon.deleted_codes, soon.expired_notices) == (2, 0)
    assert await broker.pool.fetchval("SELECT count(*) FROM rights_codes") == 0
    later = await retention.anonymise_expired(broker, now=now + timedelta(days=200))
    assert later.expired_notices == 1
    assert await broker.pool.fetchval("SELECT count(*) FROM clinic_notices WHERE envelope IS NOT NULL") == 0


def test_corrections_are_checked_field_by_field() -> None:
    with pytest.raises(InvalidRequest) as bad:
        rights.check_correction(" ", "not-an-address", "12", date(2030, 1, 1), today=date(2026, 11, 22))
    assert [e.field for e in bad.value.errors] == ["name", "email", "phone", "birth_date"]
    ok = rights.check_correction("Kari", "Kari@Example.NO", "41234567", date(1990, 1, 1), today=date(2026, 11, 22))
    assert ok == Patient("Kari", "Kari@example.no", "+4741234567", date(1990, 1, 1))


async def test_a_notice_the_clinic_cannot_open_leaves_its_inbox_and_the_overlap_waits_for_notices(
    broker: BrokerContext, outbox: Outbox
) -> None:
    a = await enrol_clinic(broker, "fysio-a")
    first, second = await _submit(broker, ["fysio-a"]), await _submit(broker, ["fysio-a"])
    await _dispatch(broker, first)
    await _dispatch(broker, second)
    await _pull_and_ack(broker, a)
    session = await _session(broker, outbox, "email", "kari@example.no")
    await rights.withdraw(broker, session, first)
    await rights.withdraw(broker, session, second)
    row = await clinics.by_slug(broker.pool, "fysio-a")
    assert row is not None
    page = await clinic_inbox.list_inbox(broker, row, 10)
    bad, good = page.items
    result = await clinic_status.refuse(
        broker,
        row,
        RefusalRequest([Refusal(bad.delivery_id, "bad_signature"), Refusal(str(uuid.uuid4()), "bad_signature")]),
    )
    assert result.refused == [bad.delivery_id] and len(result.unknown) == 1
    assert [i.delivery_id for i in (await clinic_inbox.list_inbox(broker, row, 10)).items] == [good.delivery_id]
    assert await broker.pool.fetchval("SELECT envelope FROM clinic_notices WHERE status = 'refused'") is None
    assert await broker.pool.fetchval("SELECT count(*) FROM audit_events WHERE action = 'notice.refused'") == 1

    # The key the waiting notice was sealed to is still needed: a retiring key holding it stays retiring.
    key_ids = await broker.pool.fetchval(
        "SELECT recipient_keys FROM clinic_notices WHERE id = $1", uuid.UUID(good.delivery_id)
    )
    async with broker.pool.acquire() as conn:
        assert await notices.keys_still_holding(conn, row.id, [*key_ids, "other"]) == set(key_ids)
    await clinic_inbox.acknowledge(broker, row, AckRequest([good.delivery_id]))
    async with broker.pool.acquire() as conn:
        assert await notices.keys_still_holding(conn, row.id, key_ids) == set()
