"""The dashboard: what it shows per clinic and for the pipeline, its flags, and the operator's actions."""

from __future__ import annotations

import dataclasses
import html
import re
import uuid
from datetime import timedelta
from typing import Any

from litestar.testing import AsyncTestClient

from referral_broker.services import clinic_inbox, dispatch, monitoring
from referral_broker.services.context import BrokerContext
from referral_broker.store import clinics
from referral_protocol.encoding import key_id
from referral_protocol.request_signature import sign_request
from tests.conftest import EnrolledClinic, enrol_clinic
from tests.ops.conftest import BASE, Account, Clock, OpsApp, post_form, sign_in, submit_and_dispatch


async def _make_dead(client: AsyncTestClient[Any], broker: BrokerContext, slug: str) -> uuid.UUID:
    """A referral whose dispatch gave up: the real path, with the outbox's attempts at the limit."""
    response = await client.post("/api/v1/referrals", json=_referral([slug]))
    referral_id = await broker.pool.fetchval(
        "SELECT id FROM referrals WHERE reference = $1", response.json()["reference"]
    )
    await broker.pool.execute(
        "UPDATE outbox SET attempts = $2 WHERE subject_id = $1", referral_id, broker.settings.dispatch_max_tries
    )
    assert await dispatch.dispatch_referral(broker, referral_id) == dispatch.DispatchOutcome.DEAD
    delivery_id: uuid.UUID = await broker.pool.fetchval("SELECT id FROM deliveries WHERE referral_id = $1", referral_id)
    return delivery_id


def _referral(slugs: list[str]) -> dict[str, object]:
    from tests.conftest import referral_json

    return referral_json(slugs)


async def _pull(broker: BrokerContext, slug: str) -> None:
    row = await clinics.by_slug(broker.pool, slug)
    assert row is not None
    await clinic_inbox.list_inbox(broker, row, 100)


async def test_dashboard_shows_each_clinics_deliveries_and_last_pull(
    client: AsyncTestClient[Any], broker: BrokerContext, operator: Account, clock: Clock
) -> None:
    await enrol_clinic(broker, "klinikk-a")
    await enrol_clinic(broker, "klinikk-b")
    await enrol_clinic(broker, "klinikk-c", verify=False)
    await submit_and_dispatch(client, broker, ["klinikk-a", "klinikk-b"])
    await submit_and_dispatch(client, broker, ["klinikk-a"])
    await client.post("/api/v1/referrals", json=_referral(["klinikk-b"]))  # not dispatched: waits
    await _make_dead(client, broker, "klinikk-b")
    await _pull(broker, "klinikk-a")

    board = await monitoring.dashboard(broker)
    by_slug = {w.delivery.slug: w.delivery for w in board.clinics}
    a, b, c = by_slug["klinikk-a"], by_slug["klinikk-b"], by_slug["klinikk-c"]
    assert (a.waiting_dispatch, a.in_inbox, a.failed, a.dead, a.pending_keys) == (0, 2, 0, 0, 0)
    assert (b.waiting_dispatch, b.in_inbox, b.failed, b.dead) == (1, 1, 0, 1)
    assert a.last_pull_at is not None and b.last_pull_at is None
    assert a.oldest_unacknowledged_at is not None and b.oldest_unacknowledged_at is not None
    assert (c.status, c.pending_keys, c.in_inbox) == ("pending", 2, 0)
    assert [d.clinic for d in board.dead] == ["klinikk-b"]
    assert sum(h.submitted for h in board.last_day) == 4
    assert sum(h.dispatched for h in board.last_day) == 3
    assert any(h.latency_p50 is not None for h in board.last_day)
    assert board.outbox_pending == 1 and board.reconciler_lag is not None

    await sign_in(client, operator, clock)
    page = (await client.get("/ops")).text
    assert "klinikk-a" in page and "klinikk-b" in page and "2 key(s) to verify" in page
    assert "1 dead delivery:" in page
    assert "No worker has reported yet" in page  # no heartbeat in this test
    assert "No runs yet." in page


async def test_charts_are_inline_svg_with_nothing_from_elsewhere(
    client: AsyncTestClient[Any], broker: BrokerContext, operator: Account, clock: Clock
) -> None:
    await enrol_clinic(broker, "klinikk-a")
    await submit_and_dispatch(client, broker, ["klinikk-a"])
    await sign_in(client, operator, clock)
    response = await client.get("/ops")
    page = response.text
    assert page.count("<svg") == 2 and '<rect class="bar submitted"' in page and "<polyline" in page
    assert "<script" not in page and " style=" not in page and "<style" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "default-src 'none'" in response.headers["content-security-policy"]
    css = await client.get("/static/ops.css")
    assert css.status_code == 200 and ".chart-svg" in css.text


async def test_flags_name_a_stalled_worker_dead_deliveries_and_a_clinic_that_does_not_pull(
    client: AsyncTestClient[Any], broker: BrokerContext, clock: Clock
) -> None:
    ctx = dataclasses.replace(broker, clock=clock)
    await enrol_clinic(broker, "klinikk-a")
    await enrol_clinic(broker, "klinikk-b")
    await monitoring.record_heartbeat(ctx, "worker-1")
    assert [f.text for f in (await monitoring.dashboard(ctx)).flags] == []

    await submit_and_dispatch(client, broker, ["klinikk-a"])
    clock.advance(seconds=broker.settings.pull_reminder_after_seconds + 60)
    texts = " ".join(f.text for f in (await monitoring.dashboard(ctx)).flags)
    assert "worker has stopped reporting" in texts
    assert "klinikk-a has referrals waiting and has not pulled" in texts
    assert "klinikk-b" not in texts  # nothing waits for it

    await monitoring.record_heartbeat(ctx, "worker-1")
    await _pull(ctx, "klinikk-a")
    await _make_dead(client, ctx, "klinikk-b")
    texts = " ".join(f.text for f in (await monitoring.dashboard(ctx)).flags)
    assert "worker" not in texts and "klinikk-a" not in texts
    assert "1 dead delivery:" in texts


async def test_an_operator_retries_a_dead_delivery(
    client: AsyncTestClient[Any], ops_app: OpsApp, broker: BrokerContext, operator: Account, clock: Clock
) -> None:
    await enrol_clinic(broker, "klinikk-a")
    delivery_id = await _make_dead(client, broker, "klinikk-a")
    referral_id = await broker.pool.fetchval("SELECT referral_id FROM deliveries WHERE id = $1", delivery_id)
    await sign_in(client, operator, clock)
    response = await post_form(client, f"/ops/deliveries/{delivery_id}/retry")
    assert response.status_code == 303 and response.headers["location"] == "/ops?done=retried"
    assert "queued again" in (await client.get("/ops?done=retried")).text
    assert await broker.pool.fetchval("SELECT status FROM deliveries WHERE id = $1", delivery_id) == "queued"
    outbox = await broker.pool.fetchrow("SELECT done_at, attempts FROM outbox WHERE subject_id = $1", referral_id)
    assert outbox["done_at"] is None and outbox["attempts"] == 0  # re-armed with fresh tries
    assert ("dispatch_referral", referral_id) in ops_app.doorbell.rung  # and the doorbell rung
    assert await dispatch.dispatch_referral(broker, referral_id) == dispatch.DispatchOutcome.DISPATCHED
    assert await broker.pool.fetchval("SELECT status FROM deliveries WHERE id = $1", delivery_id) == "available"
    event = await broker.pool.fetchrow("SELECT actor, details FROM audit_events WHERE action = 'delivery.retried'")
    assert event["actor"] == "operator:olga" and event["details"]["delivery"] == str(delivery_id)
    # Retrying again: the delivery is not dead any more.
    again = await post_form(client, f"/ops/deliveries/{delivery_id}/retry")
    assert again.status_code == 409 and "not dead" in again.text


async def test_an_operator_suspends_and_reactivates_a_clinic(
    client: AsyncTestClient[Any], broker: BrokerContext, operator: Account, clock: Clock
) -> None:
    a = await enrol_clinic(broker, "klinikk-a")
    await sign_in(client, operator, clock)
    name = await broker.pool.fetchval("SELECT name FROM clinics WHERE slug = 'klinikk-a'")
    # The first click asks, naming the clinic; nothing is suspended yet.
    asked = await post_form(client, "/ops/clinics/klinikk-a/suspend")
    assert asked.status_code == 200 and f"Suspend {name}?" in html.unescape(asked.text)
    assert 'name="confirm" value="yes"' in asked.text
    assert await broker.pool.fetchval("SELECT status FROM clinics WHERE slug = 'klinikk-a'") == "active"
    assert (await post_form(client, "/ops/clinics/no-such-clinic/suspend")).status_code == 409
    done = await post_form(client, "/ops/clinics/klinikk-a/suspend", confirm="yes")
    assert done.status_code == 303 and done.headers["location"] == "/ops?done=suspended&clinic=klinikk-a"
    said = html.unescape((await client.get(done.headers["location"])).text)
    assert f"{name} is suspended: it is not offered to patients" in said
    forged = html.unescape((await client.get("/ops?done=suspended&clinic=<b>evil</b>")).text)
    assert "evil" not in forged[forged.index("<main") :]  # a name comes from the board, never from the query
    assert "klinikk-a" not in (await client.get("/api/v1/clinics")).text  # not offered to patients
    assert (await _signed_inbox(client, a)).status_code == 403  # its requests are refused
    assert (await post_form(client, "/ops/clinics/klinikk-a/suspend", confirm="yes")).status_code == 409
    assert (await post_form(client, "/ops/clinics/klinikk-a/reactivate")).status_code == 303
    assert "klinikk-a" in (await client.get("/api/v1/clinics")).text
    assert (await _signed_inbox(client, a)).status_code == 200
    actions = [r["action"] for r in await broker.pool.fetch("SELECT action FROM audit_events ORDER BY id")]
    assert actions[-2:] == ["clinic.suspended", "clinic.reactivated"]


async def _signed_inbox(client: AsyncTestClient[Any], clinic: EnrolledClinic) -> Any:
    path = "/api/v1/clinic/inbox"
    headers = sign_request(
        "GET",
        BASE + path,
        {},
        None,
        key_id=key_id(clinic.secrets.signing_public),
        seed=clinic.secrets.signing_seed,
    )
    return await client.get(path, headers=headers)


async def test_an_operator_verifies_pending_keys_only_with_the_right_fingerprint_typed_in(
    client: AsyncTestClient[Any], broker: BrokerContext, operator: Account, clock: Clock
) -> None:
    c = await enrol_clinic(broker, "klinikk-c", verify=False)
    await sign_in(client, operator, clock)
    page = (await client.get("/ops")).text
    assert 'action="/ops/clinics/klinikk-c/verify"' in page
    assert c.fingerprint not in page and c.fingerprint.replace("-", "") not in page  # typed in, never shown
    wrong = await post_form(client, "/ops/clinics/klinikk-c/verify", fingerprint="AAAA-BBBB-CCCC")
    assert wrong.status_code == 409 and "does not match" in wrong.text
    states = {r["state"] for r in await broker.pool.fetch("SELECT state FROM clinic_keys")}
    assert states == {"pending"}
    refused = await broker.pool.fetchval("SELECT actor FROM audit_events WHERE action = 'clinic.verify_refused'")
    assert refused == "operator:olga"  # the refusal is recorded (and committed)
    right = await post_form(client, "/ops/clinics/klinikk-c/verify", fingerprint=c.fingerprint.lower())
    assert right.status_code == 303 and right.headers["location"] == "/ops?done=verified&clinic=klinikk-c"
    states = {r["state"] for r in await broker.pool.fetch("SELECT state FROM clinic_keys")}
    assert states == {"active"}
    assert await broker.pool.fetchval("SELECT status FROM clinics") == "active"


async def test_last_retention_runs_are_listed(
    client: AsyncTestClient[Any], broker: BrokerContext, operator: Account, clock: Clock
) -> None:
    from referral_broker.services import retention

    await enrol_clinic(broker, "klinikk-a")
    await sign_in(client, operator, clock)
    assert "No runs yet." in (await client.get("/ops")).text
    await submit_and_dispatch(client, broker, ["klinikk-a"])
    run = await retention.anonymise_expired(broker, now=clock() + timedelta(days=200))
    assert run.anonymised == 1
    page = (await client.get("/ops")).text
    assert "No runs yet." not in page and "anonymised: 1" in page and "expired_deliveries: 1" in page
