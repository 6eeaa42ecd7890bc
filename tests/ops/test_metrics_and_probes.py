"""/metrics (Prometheus text, read from the database so every server process agrees), /healthz and /readyz."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from referral_broker.services import clinic_inbox, dispatch, retention
from referral_broker.services.context import BrokerContext
from referral_broker.services.settings import Settings
from referral_broker.store import clinics
from referral_broker.web.app import create_app
from referral_protocol.enrolment import AckRequest
from tests.conftest import enrol_clinic, referral_json
from tests.ops.conftest import BASE, Clock, submit_and_dispatch
from tests.ops.notice_sinks import free_port


def _samples(text: str) -> dict[str, float]:
    """`name{label="v",…}` → value, for every sample."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            found[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return found


async def _scrape(client: AsyncTestClient[Any]) -> dict[str, float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return _samples(response.text)


async def test_metrics_count_the_pipeline_from_the_database(
    client: AsyncTestClient[Any], broker: BrokerContext
) -> None:
    await enrol_clinic(broker, "klinikk-a")
    before = await _scrape(client)
    assert before["referral_broker_submissions_total"] == 0
    assert before['referral_broker_retention_rows_total{kind="anonymised_referrals"}'] == 0  # no runs yet

    await submit_and_dispatch(client, broker, ["klinikk-a"])
    await submit_and_dispatch(client, broker, ["klinikk-a"])
    await client.post("/api/v1/referrals", json=referral_json(["klinikk-a"]))  # waits in the outbox
    clinic = await clinics.by_slug(broker.pool, "klinikk-a")
    assert clinic is not None
    page = await clinic_inbox.list_inbox(broker, clinic, 10)
    await clinic_inbox.acknowledge(broker, clinic, AckRequest(delivery_ids=[page.items[0].delivery_id]))
    # A referral whose dispatch gives up counts as a failure with its reason.
    rid: uuid.UUID = await broker.pool.fetchval("SELECT referral_id FROM deliveries WHERE status = 'queued' LIMIT 1")
    await broker.pool.execute("UPDATE outbox SET attempts = 99 WHERE subject_id = $1", rid)
    await dispatch.dispatch_referral(broker, rid)

    m = await _scrape(client)
    assert m["referral_broker_submissions_total"] == 3
    assert m["referral_broker_dispatches_total"] == 2
    assert m["referral_broker_acknowledgements_total"] == 1
    assert m['referral_broker_failures_total{reason="dispatch:gave_up"}'] == 1
    assert m['referral_broker_deliveries{status="dead"}'] == 1
    assert m['referral_broker_deliveries{status="available"}'] == 1
    assert m["referral_broker_delivery_latency_seconds_count"] == 2
    assert m['referral_broker_delivery_latency_seconds_bucket{le="+Inf"}'] == 2
    assert m['referral_broker_delivery_latency_seconds_bucket{le="86400"}'] == 2
    assert m["referral_broker_delivery_latency_seconds_sum"] >= 0
    assert m['referral_broker_queue_depth{queue="outbox"}'] == 0
    assert m["referral_broker_reconciler_lag_seconds"] == 0
    run = await retention.anonymise_expired(broker, now=datetime.now(UTC) + timedelta(days=200))
    m = await _scrape(client)
    assert m['referral_broker_retention_rows_total{kind="anonymised_referrals"}'] == run.anonymised == 3
    assert m['referral_broker_retention_rows_total{kind="expired_deliveries"}'] == run.expired_deliveries


async def test_every_server_process_reports_the_same_numbers(
    settings: Settings, broker: BrokerContext, redis_url: str
) -> None:
    """Two apps stand for two `serve --workers` processes: what one served, the other reports too."""
    await enrol_clinic(broker, "klinikk-a")
    unlimited = msgspec.structs.replace(settings, submit_rate=0)
    first, second = create_app(unlimited), create_app(unlimited)  # the real Redis doorbell, each its own
    async with AsyncTestClient(app=first, base_url=BASE) as one, AsyncTestClient(app=second, base_url=BASE) as two:
        for _ in range(3):
            assert (await one.post("/api/v1/referrals", json=referral_json(["klinikk-a"]))).status_code == 201
        a, b = await _scrape(one), await _scrape(two)
        ages = {"referral_broker_reconciler_lag_seconds"}  # grows between the two scrapes
        assert {k: v for k, v in a.items() if k not in ages} == {k: v for k, v in b.items() if k not in ages}
        assert b["referral_broker_reconciler_lag_seconds"] >= a["referral_broker_reconciler_lag_seconds"] > 0
        assert b["referral_broker_submissions_total"] == 3
        assert b['referral_broker_queue_depth{queue="outbox"}'] == 3
        assert b['referral_broker_queue_depth{queue="redis"}'] == 3  # rung, no worker running


async def test_metrics_ask_for_a_bearer_token_when_one_is_set(settings: Settings) -> None:
    app = create_app(msgspec.structs.replace(settings, metrics_token="scrape-me-please"))
    async with AsyncTestClient(app=app, base_url=BASE) as c:
        assert (await c.get("/metrics")).status_code == 401
        assert (await c.get("/metrics", headers={"authorization": "Bearer wrong"})).status_code == 401
        assert (await c.get("/metrics", headers={"authorization": "Bearer scrape-me-please"})).status_code == 200


async def test_healthz_answers_and_readyz_reports_postgres_and_redis(settings: Settings, redis_url: str) -> None:
    async with AsyncTestClient(app=create_app(settings), base_url=BASE) as c:
        assert (await c.get("/healthz")).json() == {"status": "ok"}
        ready = await c.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"postgres": "ok", "redis": "ok"}
    away = msgspec.structs.replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with AsyncTestClient(app=create_app(away), base_url=BASE) as c:
        assert (await c.get("/healthz")).status_code == 200  # the process is up …
        ready = await c.get("/readyz")
        assert ready.status_code == 503 and ready.json() == {"postgres": "ok", "redis": "unreachable"}  # … not ready
        m = _samples((await c.get("/metrics")).text)
        assert 'referral_broker_queue_depth{queue="redis"}' not in m  # unknown, not a false zero


async def test_the_dashboard_reads_the_queue_depth_from_redis(
    settings: Settings, broker: BrokerContext, clock: Clock, redis_url: str
) -> None:
    from referral_broker.adapters.arq_doorbell import ArqDoorbell
    from referral_broker.services import monitoring

    doorbell = ArqDoorbell(redis_url)
    ctx = dataclasses.replace(broker, doorbell=doorbell)
    try:
        await doorbell.ring("dispatch_referral", uuid.uuid4())
        await doorbell.ring("dispatch_referral", uuid.uuid4())
        assert (await monitoring.dashboard(ctx)).arq_depth == 2
    finally:
        await doorbell.close()
