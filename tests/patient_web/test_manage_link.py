"""The private manage link: each clinic's state with times, and withdrawing consent after a confirm step."""

from __future__ import annotations

import re
import uuid
from typing import Any

import msgspec
from litestar.testing import AsyncTestClient

from referral_broker.services import dispatch
from referral_broker.services.context import BrokerContext
from referral_broker.store import deliveries
from referral_protocol.encoding import key_id
from referral_protocol.request_signature import sign_request
from tests.conftest import EnrolledClinic
from tests.patient_web.conftest import BASE, csrf_of, manage_token_of, send_form


async def _submitted(client: AsyncTestClient[Any], broker: BrokerContext, slugs: list[str]) -> tuple[str, uuid.UUID]:
    receipt = await send_form(client, slugs)
    assert receipt.status_code == 200, receipt.text
    token = manage_token_of(receipt.text)
    referral_id = await broker.pool.fetchval("SELECT id FROM referrals ORDER BY created_at DESC LIMIT 1")
    return token, referral_id


async def _acknowledge(broker: BrokerContext, referral_id: uuid.UUID, slug: str) -> None:
    async with broker.pool.acquire() as conn, conn.transaction():
        clinic_id, delivery_id = await conn.fetchrow(
            """SELECT c.id, d.id FROM deliveries d JOIN clinics c ON c.id = d.clinic_id
               WHERE d.referral_id = $1 AND c.slug = $2""",
            referral_id,
            slug,
        )
        moved, _ = await deliveries.acknowledge(conn, clinic_id, [delivery_id], broker.clock())
        assert moved == [delivery_id]


async def _inbox_ids(client: AsyncTestClient[Any], clinic: EnrolledClinic) -> list[str]:
    path = "/api/v1/clinic/inbox"
    headers = sign_request(
        "GET", BASE + path, {}, None, key_id=key_id(clinic.secrets.signing_public), seed=clinic.secrets.signing_seed
    )
    response = await client.get(path, headers=headers)
    assert response.status_code == 200, response.text
    return [item["delivery_id"] for item in msgspec.json.decode(response.content)["items"]]


def _states(page: str) -> dict[str, str]:
    """Clinic name → the state shown for it."""
    found = re.findall(
        r'<h3 class="status__clinic">(.*?)</h3>\s*<p class="status__state"><span class="badge[^"]*">(.*?)</span>', page
    )
    return dict(found)


async def test_manage_page_shows_each_clinics_state_with_times(
    client: AsyncTestClient[Any], broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    token, referral_id = await _submitted(client, broker, ["fysio-oslo", "psyk-oslo", "hud-bergen"])
    page = (await client.get(f"/manage/{token}")).text
    assert _states(page) == {
        "Klinikk fysio-oslo": "Venter på å bli levert",
        "Klinikk hud-bergen": "Venter på å bli levert",
        "Klinikk psyk-oslo": "Venter på å bli levert",
    }
    await dispatch.dispatch_referral(broker, referral_id)
    await _acknowledge(broker, referral_id, "fysio-oslo")
    await broker.pool.execute(
        """UPDATE deliveries SET status = 'dead' FROM clinics c
           WHERE c.id = deliveries.clinic_id AND c.slug = 'hud-bergen'"""
    )
    response = await client.get(f"/manage/{token}?lang=en")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    page = response.text
    assert _states(page) == {
        "Klinikk fysio-oslo": "Received by the clinic",
        "Klinikk hud-bergen": "Could not be delivered",
        "Klinikk psyk-oslo": "Delivered to the clinic&#39;s inbox",
    }
    assert len(re.findall(r'<span class="status__time">\d{1,2} [A-Z][a-z]+ \d{4} at \d\d:\d\d</span>', page)) == 3
    reference = await broker.pool.fetchval("SELECT reference FROM referrals")
    assert f'<h1>Request <span class="nowrap">{reference}</span></h1>' in page
    assert 'action="/manage/' in page and "Withdraw consent" in page
    nb = (await client.get(f"/manage/{token}?lang=nb")).text
    assert re.search(r'<span class="status__time">\d{1,2}\. [a-zæøå]+ \d{4} kl\. \d\d:\d\d</span>', nb)


async def test_wrong_token_shows_the_same_page_as_an_unknown_one(
    client: AsyncTestClient[Any], broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    token, _ = await _submitted(client, broker, ["fysio-oslo"])
    altered = token[:-1] + ("A" if token[-1] != "A" else "B")
    answers = [
        await client.get(f"/manage/{candidate}")
        for candidate in (altered, "x" * 43, "short", "a" * 500, "%00%2F..", uuid.uuid4().hex)
    ]
    answers.append(await client.get("/no-such-page"))
    assert {a.status_code for a in answers} == {404}
    assert len({a.text for a in answers}) == 1
    assert "Vi finner ikke denne siden" in answers[0].text
    assert (await client.get(f"/manage/{token}")).status_code == 200


async def test_withdraw_cancels_undelivered_deliveries_and_leaves_those_received(
    client: AsyncTestClient[Any], broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    token, referral_id = await _submitted(client, broker, ["fysio-oslo", "psyk-oslo", "hud-bergen"])
    await dispatch.dispatch_referral(broker, referral_id)  # all three in their clinics' inboxes
    await _acknowledge(broker, referral_id, "fysio-oslo")  # one clinic has it
    await broker.pool.execute(
        """UPDATE deliveries SET status = 'queued' FROM clinics c
           WHERE c.id = deliveries.clinic_id AND c.slug = 'hud-bergen'"""
    )  # and one is still waiting to be made available
    await broker.pool.execute("UPDATE outbox SET done_at = NULL")
    assert len(await _inbox_ids(client, clinics["psyk-oslo"])) == 1

    page = await client.get(f"/manage/{token}?lang=en")
    # The manage page says beforehand what withdrawing stops and who is told, in the rights pages' words.
    assert "Stopped at once, before the clinic receives it: Klinikk hud-bergen and Klinikk psyk-oslo." in page.text
    told = "Klinikk fysio-oslo and Klinikk psyk-oslo"
    assert f"These clinics have received the request and are told that you withdrew consent: {told}." in (page.text)
    assert "keep it" not in page.text and "Contact them directly" not in page.text  # they are told automatically
    csrf = csrf_of(page.text)
    asked = await client.post(f"/manage/{token}/withdraw", data={"_csrf_token": csrf})
    assert asked.status_code == 200 and "<h1>Withdraw consent?</h1>" in asked.text
    assert "This cannot be undone." in asked.text
    assert f'action="/manage/{token}/withdraw/confirm"' in asked.text and f'href="/manage/{token}"' in asked.text
    assert await broker.pool.fetchval("SELECT withdrawn_at FROM referrals WHERE id = $1", referral_id) is None
    response = await client.post(f"/manage/{token}/withdraw/confirm", data={"_csrf_token": csrf_of(asked.text)})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    text = response.text
    assert "Consent has been withdrawn" in text
    assert "Stopped before the clinic received it: Klinikk hud-bergen and Klinikk psyk-oslo." in text
    assert f"These clinics are told that you withdrew consent: {told}." in text
    assert 'action="/manage/' not in text  # nothing left to withdraw

    rows = {
        r["slug"]: r
        for r in await broker.pool.fetch(
            """SELECT c.slug, d.status, d.envelope FROM deliveries d JOIN clinics c ON c.id = d.clinic_id
               WHERE d.referral_id = $1""",
            referral_id,
        )
    }
    assert {slug: r["status"] for slug, r in rows.items()} == {
        "fysio-oslo": "acknowledged",
        "psyk-oslo": "cancelled",
        "hud-bergen": "cancelled",
    }
    assert all(r["envelope"] is None for r in rows.values())  # the available one's ciphertext is gone too
    # The clinic can no longer pull the referral; it fetched it (listed above) without acknowledging, so
    # it gets a withdrawal notice in its place. The clinic that has it gets one; the one never reached
    # does not (decision 0139), and the receipt names both.
    [notice_id] = await _inbox_ids(client, clinics["psyk-oslo"])
    notices = await broker.pool.fetch(
        """SELECT n.id, c.slug, n.kind FROM clinic_notices n JOIN clinics c ON c.id = n.clinic_id ORDER BY c.slug"""
    )
    assert [(n["slug"], n["kind"]) for n in notices] == [("fysio-oslo", "withdrawal"), ("psyk-oslo", "withdrawal")]
    assert notice_id == str(notices[1]["id"])
    assert "These clinics are told that you withdrew consent: Klinikk fysio-oslo and Klinikk psyk-oslo." in text
    assert (
        "These clinics had not received the request yet, so they have not been told anything: Klinikk hud-bergen."
        in text
    )
    later = (await client.get(f"/manage/{token}?lang=en")).text  # a later visit says the same
    assert "These clinics are told that you withdrew consent: Klinikk fysio-oslo and Klinikk psyk-oslo." in later
    assert "so they have not been told anything: Klinikk hud-bergen." in later
    assert await _inbox_ids(client, clinics["hud-bergen"]) == []
    assert await broker.pool.fetchval("SELECT withdrawn_at FROM referrals WHERE id = $1", referral_id) is not None
    assert await broker.pool.fetchval("SELECT done_at IS NOT NULL FROM outbox WHERE subject_id = $1", referral_id)
    assert await broker.pool.fetchval("SELECT outcome FROM outbox WHERE subject_id = $1", referral_id) == "withdrawn"
    event = await broker.pool.fetchrow("SELECT * FROM audit_events WHERE action = 'referral.withdrawn'")
    assert event["subject"] == str(referral_id) and event["actor"] == "patient"
    assert sorted(event["details"]["cancelled"]) == sorted(
        str(i)
        for i in await broker.pool.fetchval(
            "SELECT array_agg(id) FROM deliveries WHERE referral_id = $1 AND status = 'cancelled'", referral_id
        )
    )
    # the phone as typed and as stored; a short piece of it ("412") turned up in a timestamp's microseconds
    for personal in ("Kari", "kari@example.no", "412 34 567", "41234567", "Vondt"):
        assert personal not in str(dict(event))
    # A dispatch job arriving late changes nothing.
    assert (await dispatch.dispatch_referral(broker, referral_id)).value == "nothing-to-do"


async def test_withdrawing_twice_is_harmless(
    client: AsyncTestClient[Any], broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    token, referral_id = await _submitted(client, broker, ["fysio-oslo"])
    csrf = csrf_of((await client.get(f"/manage/{token}")).text)
    first = await client.post(f"/manage/{token}/withdraw/confirm", data={"_csrf_token": csrf})
    withdrawn_at = await broker.pool.fetchval("SELECT withdrawn_at FROM referrals")
    second = await client.post(f"/manage/{token}/withdraw/confirm", data={"_csrf_token": csrf})
    asked_again = await client.post(f"/manage/{token}/withdraw", data={"_csrf_token": csrf})
    assert first.status_code == second.status_code == asked_again.status_code == 200
    assert "Stanset før klinikken mottok den: Klinikk fysio-oslo." in first.text
    assert "Det var ingenting igjen å stanse." in second.text
    assert "Trekke tilbake samtykket?" not in asked_again.text  # nothing to confirm any more
    assert await broker.pool.fetchval("SELECT withdrawn_at FROM referrals") == withdrawn_at
    assert await broker.pool.fetchval("SELECT count(*) FROM audit_events WHERE action = 'referral.withdrawn'") == 1
    assert (
        await broker.pool.fetchval("SELECT status FROM deliveries WHERE referral_id = $1", referral_id) == "cancelled"
    )
    later = (await client.get(f"/manage/{token}")).text
    assert "Du trakk tilbake samtykket" in later and "Stanset" in later
    assert 'action="/manage/' not in later


async def test_withdraw_with_an_unknown_token_changes_nothing(
    client: AsyncTestClient[Any], broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    token, _ = await _submitted(client, broker, ["fysio-oslo"])
    csrf = csrf_of((await client.get(f"/manage/{token}")).text)
    for wrong in (token[:-2] + "zz", "nope"):
        for step in ("withdraw", "withdraw/confirm"):
            response = await client.post(f"/manage/{wrong}/{step}", data={"_csrf_token": csrf})
            assert response.status_code == 404
            assert "Vi finner ikke denne siden" in response.text
    assert await broker.pool.fetchval("SELECT count(*) FROM referrals WHERE withdrawn_at IS NOT NULL") == 0
