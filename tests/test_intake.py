"""Intake: only verified clinics, every wrong field named and nothing stored, no plaintext kept."""

from __future__ import annotations

import asyncio
import hashlib

import asyncpg
import msgspec
import pytest

from referral_broker.services import intake
from referral_broker.services.context import BrokerContext
from referral_broker.services.ports import JOB_DISPATCH
from referral_protocol.errors import InvalidRequest
from referral_protocol.referral import ContactCopy, ReferralRequest
from tests.conftest import RecordingDoorbell, enrol_clinic, referral_json


def _request(data: dict[str, object]) -> ReferralRequest:
    return msgspec.convert(data, ReferralRequest)


async def _count(ctx: BrokerContext, table: str) -> int:
    return int(await ctx.pool.fetchval(f"SELECT count(*) FROM {table}"))  # noqa: S608 - fixed table names


async def test_accepted_referral_commits_with_its_outbox_row_and_rings_once(broker: BrokerContext) -> None:
    await enrol_clinic(broker, "fysio-oslo")
    await enrol_clinic(broker, "hud-bergen")
    receipt = await intake.submit(broker, _request(referral_json(["fysio-oslo", "hud-bergen"])))
    assert receipt.reference.startswith("RB-")
    assert receipt.manage_url.startswith("https://broker.test/manage/")
    assert [d.status for d in receipt.deliveries] == ["queued", "queued"]
    rid = await broker.pool.fetchval("SELECT id FROM referrals WHERE reference = $1", receipt.reference)
    assert await _count(broker, "deliveries") == 2
    assert await broker.pool.fetchval("SELECT count(*) FROM outbox WHERE subject_id = $1 AND done_at IS NULL", rid) == 1
    doorbell = broker.doorbell
    assert isinstance(doorbell, RecordingDoorbell)
    assert doorbell.rung == [(JOB_DISPATCH, rid)]


async def test_manage_token_is_stored_only_hashed(broker: BrokerContext) -> None:
    await enrol_clinic(broker, "fysio-oslo")
    receipt = await intake.submit(broker, _request(referral_json(["fysio-oslo"])))
    token = receipt.manage_url.rsplit("/", 1)[1]
    assert len(token) >= 43  # 32 random bytes
    stored = await broker.pool.fetchval("SELECT manage_token_hash FROM referrals")
    assert stored == hashlib.sha256(token.encode()).digest()


async def test_contact_copy_is_encrypted_and_bound_to_its_row(broker: BrokerContext) -> None:
    await enrol_clinic(broker, "fysio-oslo")
    await intake.submit(broker, _request(referral_json(["fysio-oslo"], email="kari.canary@example.no")))
    row = await broker.pool.fetchrow("SELECT id, contact_ct, email_bidx FROM referrals")
    assert b"canary" not in row["contact_ct"]
    copy = msgspec.json.decode(broker.keys.vault.decrypt(row["contact_ct"], bound_to=row["id"].bytes), type=ContactCopy)
    assert copy.email == "kari.canary@example.no"
    assert row["email_bidx"] == broker.keys.vault.blind_index("email", "kari.canary@example.no")


@pytest.mark.parametrize(("verify", "code"), [(False, "unavailable"), (True, None)])
async def test_only_clinics_whose_key_was_verified_can_be_chosen(
    broker: BrokerContext, verify: bool, code: str | None
) -> None:
    await enrol_clinic(broker, "ny-klinikk", verify=verify)
    if code is None:
        await intake.submit(broker, _request(referral_json(["ny-klinikk"])))
        return
    with pytest.raises(InvalidRequest) as caught:
        await intake.submit(broker, _request(referral_json(["ny-klinikk"])))
    assert [(e.field, e.code) for e in caught.value.errors] == [("clinics[0]", code)]
    assert await _count(broker, "referrals") == 0


async def test_unknown_clinic_and_bad_fields_are_all_named_and_nothing_is_stored(
    broker: BrokerContext,
) -> None:
    await enrol_clinic(broker, "fysio-oslo")
    bad = referral_json(["fysio-oslo", "finnes-ikke"], email="nope", birth_date="2015-02-01")
    with pytest.raises(InvalidRequest) as caught:
        await intake.submit(broker, _request(bad))
    assert {e.field for e in caught.value.errors} == {"clinics[1]", "patient.email", "patient.birth_date"}
    for table in ("referrals", "deliveries", "outbox"):
        assert await _count(broker, table) == 0
    assert isinstance(broker.doorbell, RecordingDoorbell) and broker.doorbell.rung == []


async def test_referral_is_sealed_to_every_active_key_and_only_chosen_clinics(broker: BrokerContext) -> None:
    await enrol_clinic(broker, "valgt")
    await enrol_clinic(broker, "ikke-valgt")
    await intake.submit(broker, _request(referral_json(["valgt"])))
    rows = await broker.pool.fetch(
        "SELECT c.slug, d.recipient_keys FROM deliveries d JOIN clinics c ON c.id = d.clinic_id"
    )
    assert [r["slug"] for r in rows] == ["valgt"]
    assert len(rows[0]["recipient_keys"]) == 1


async def test_failed_enqueue_after_commit_loses_nothing(broker: BrokerContext) -> None:
    class BrokenDoorbell:
        async def ring(self, job: str, subject_id: object) -> None:
            raise ConnectionError("redis is away")

    await enrol_clinic(broker, "fysio-oslo")
    broker.doorbell = BrokenDoorbell()
    receipt = await intake.submit(broker, _request(referral_json(["fysio-oslo"])))
    pending = await broker.pool.fetchval(
        "SELECT count(*) FROM outbox o JOIN referrals r ON r.id = o.subject_id WHERE r.reference = $1 "
        "AND o.done_at IS NULL",
        receipt.reference,
    )
    assert pending == 1


async def test_database_holds_no_plaintext_of_the_referral(broker: BrokerContext, clean_db: str) -> None:
    await enrol_clinic(broker, "fysio-oslo")
    canaries = ["Canaryname Zqx", "canary.mail.zqx@example.no", "+4741239876", "CANARY-NEED-ZQX-7731"]
    await intake.submit(
        broker,
        _request(
            referral_json(
                ["fysio-oslo"],
                name=canaries[0],
                email=canaries[1],
                phone=canaries[2],
                description=f"knee {canaries[3]} pain",
            )
        ),
    )
    conn = await asyncpg.connect(clean_db)
    try:
        dump = []
        for table in ("referrals", "deliveries", "outbox", "audit_events", "dispatch_receipts"):
            for row in await conn.fetch(f"SELECT * FROM {table}"):  # noqa: S608 - fixed table names
                dump.append(repr(dict(row)))
    finally:
        await conn.close()
    text = "\n".join(dump)
    for canary in canaries:
        assert canary not in text
        assert canary.lower() not in text.lower()


async def test_repeats_with_one_idempotency_key_create_one_referral_even_when_they_race(broker: BrokerContext) -> None:
    await enrol_clinic(broker, "fysio-oslo")
    request = _request(referral_json(["fysio-oslo"]))
    results = await asyncio.gather(
        *(intake.submit_once(broker, request, idempotency_key="retry-key-0123456789") for _ in range(5))
    )
    assert await _count(broker, "referrals") == 1
    receipts = {(r.reference, r.manage_url) for r, _ in results}
    assert len(receipts) == 1
    assert sorted(repeated for _, repeated in results) == [False, True, True, True, True]
    # The derived link is a working manage token, stored only hashed like any other.
    token = results[0][0].manage_url.rsplit("/", 1)[1]
    assert (
        await broker.pool.fetchval("SELECT manage_token_hash FROM referrals") == hashlib.sha256(token.encode()).digest()
    )


async def test_an_idempotency_key_with_another_request_is_another_referral_and_reveals_nothing(
    broker: BrokerContext,
) -> None:
    await enrol_clinic(broker, "fysio-oslo")
    first, _ = await intake.submit_once(
        broker, _request(referral_json(["fysio-oslo"])), idempotency_key="shared-key-0123456789"
    )
    other, repeated = await intake.submit_once(
        broker, _request(referral_json(["fysio-oslo"], name="Someone Else")), idempotency_key="shared-key-0123456789"
    )
    assert not repeated and other.reference != first.reference and other.manage_url != first.manage_url
    assert await _count(broker, "referrals") == 2


async def test_a_malformed_idempotency_key_is_refused(broker: BrokerContext) -> None:
    await enrol_clinic(broker, "fysio-oslo")
    with pytest.raises(InvalidRequest) as caught:
        await intake.submit_once(broker, _request(referral_json(["fysio-oslo"])), idempotency_key="short")
    assert caught.value.errors[0].field == "Idempotency-Key"
    assert await _count(broker, "referrals") == 0


async def test_a_reference_already_taken_is_drawn_again(broker: BrokerContext, monkeypatch: pytest.MonkeyPatch) -> None:
    await enrol_clinic(broker, "fysio-oslo")
    first = await intake.submit(broker, _request(referral_json(["fysio-oslo"])))
    taken = iter([first.reference])
    fresh = intake.new_reference
    monkeypatch.setattr(intake, "new_reference", lambda: next(taken, None) or fresh())

    second = await intake.submit(broker, _request(referral_json(["fysio-oslo"], name="Someone Else")))
    assert second.reference != first.reference
    assert await _count(broker, "referrals") == 2


async def test_a_keyed_repeat_caught_by_the_unique_index_returns_the_first_receipt(
    broker: BrokerContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The repeat misses the first look-up (as when it races the first request), so only the database's
    # unique index on the idempotency hash stops a second referral.
    await enrol_clinic(broker, "fysio-oslo")
    request = _request(referral_json(["fysio-oslo"]))
    first, _ = await intake.submit_once(broker, request, idempotency_key="retry-key-0123456789")
    look_up = intake._earlier_receipt
    looks = 0

    async def blind_at_first(ctx: BrokerContext, key: str) -> intake.Receipt | None:
        nonlocal looks
        looks += 1
        return None if looks == 1 else await look_up(ctx, key)

    monkeypatch.setattr(intake, "_earlier_receipt", blind_at_first)
    again, repeated = await intake.submit_once(broker, request, idempotency_key="retry-key-0123456789")
    assert repeated and looks == 2
    assert (again.reference, again.manage_url) == (first.reference, first.manage_url)
    assert await _count(broker, "referrals") == 1
