"""The long-polling inbox with the real PostgreSQL, served by uvicorn with `serve`'s own options in this event
loop (so requests really run side by side): held while nothing waits, answered when dispatch NOTIFYs the
clinic, bounded, and answered when the server stops. No timing targets: a held request that was not woken
comes back empty after its wait, which the assertions on `items` catch."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import httpx
import msgspec
import pytest
import uvicorn
from litestar import Litestar

from devstack import free_port
from referral_broker.cli.http_server import server_options
from referral_broker.services import dispatch
from referral_broker.services.context import BrokerContext
from referral_broker.services.inbox_waiting import InboxWaiters
from referral_broker.services.settings import Settings
from referral_broker.store import inbox_signal
from referral_broker.store.inbox_signal import InboxListener
from referral_broker.web.app import create_app
from referral_protocol.encoding import key_id
from referral_protocol.request_signature import sign_request
from tests.conftest import EnrolledClinic, RecordingDoorbell, enrol_clinic, referral_json


@dataclass
class Served:
    app: Litestar
    client: httpx.AsyncClient
    server: uvicorn.Server
    task: asyncio.Task[None]

    @property
    def waiters(self) -> InboxWaiters:
        waiters: InboxWaiters = self.app.state.inbox_waiters
        return waiters

    async def held(self, count: int) -> None:
        """Until `count` listings are held (registered waiters): the moment to make something arrive."""
        while self.waiters.held < count:
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self.server.should_exit = True
        await asyncio.wait_for(self.task, timeout=40)


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Served]:
    app = create_app(settings, doorbell_factory=lambda s: RecordingDoorbell())
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **server_options(settings))
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.02)
    listener: InboxListener = app.state.inbox_listener
    await asyncio.wait_for(listener.connected.wait(), timeout=10)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=40) as client:
        served = Served(app, client, server, task)
        try:
            yield served
        finally:
            if not task.done():
                await served.stop()


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[Served]:
    async with serving(settings) as s:
        yield s


def _signed(s: Served, clinic: EnrolledClinic, path: str) -> dict[str, str]:
    return sign_request(
        "GET",
        str(s.client.base_url).rstrip("/") + path,
        {},
        None,
        key_id=key_id(clinic.secrets.signing_public),
        seed=clinic.secrets.signing_seed,
    )


async def _poll(s: Served, clinic: EnrolledClinic, query: str) -> httpx.Response:
    path = f"/api/v1/clinic/inbox?{query}"
    return await s.client.get(path, headers=_signed(s, clinic, path))


async def _submit_and_dispatch(s: Served, broker: BrokerContext, clinics: list[str]) -> str:
    response = await s.client.post("/api/v1/referrals", json=referral_json(clinics))
    assert response.status_code == 201, response.text
    reference: str = response.json()["reference"]
    rid = await broker.pool.fetchval("SELECT id FROM referrals WHERE reference = $1", reference)
    await dispatch.dispatch_referral(broker, rid)
    return reference


@pytest.mark.parametrize("wait", ["26", "-1", "abc", "1.5", "99999999999999999999999"])
async def test_a_wait_out_of_range_is_a_field_error(served: Served, broker: BrokerContext, wait: str) -> None:
    a = await enrol_clinic(broker, "klinikk-a")
    response = await _poll(served, a, f"wait={wait}")
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["wait"]


async def test_a_held_listing_answers_with_the_referral_dispatch_made_available(
    served: Served, broker: BrokerContext
) -> None:
    a = await enrol_clinic(broker, "klinikk-a")
    b = await enrol_clinic(broker, "klinikk-b")
    held_a = asyncio.create_task(_poll(served, a, "wait=25"))
    held_b = asyncio.create_task(_poll(served, b, "wait=2"))
    await served.held(2)
    await _submit_and_dispatch(served, broker, ["klinikk-a"])
    answer = await held_a
    assert answer.status_code == 200 and len(answer.json()["items"]) == 1  # woken, not run out empty
    other = await held_b  # another clinic's wait is not answered with it: it runs out, empty
    assert other.status_code == 200 and other.json()["items"] == []


async def test_what_already_waits_is_answered_at_once_and_wait_zero_is_todays_listing(
    served: Served, broker: BrokerContext
) -> None:
    a = await enrol_clinic(broker, "klinikk-a")
    assert (await _poll(served, a, "wait=0")).json() == {"items": [], "more": False}
    await _submit_and_dispatch(served, broker, ["klinikk-a"])
    answer = await asyncio.wait_for(_poll(served, a, "wait=25"), timeout=20)  # functional bound, not a target
    assert len(answer.json()["items"]) == 1
    assert served.waiters.held == 0


async def test_consecutive_long_polls_pass_the_replay_guard(served: Served, broker: BrokerContext) -> None:
    a = await enrol_clinic(broker, "klinikk-a")
    for _ in range(3):
        response = await _poll(served, a, "wait=1")
        assert response.status_code == 200 and response.json()["items"] == []
    path = "/api/v1/clinic/inbox?wait=1"
    headers = _signed(served, a, path)
    assert (await served.client.get(path, headers=headers)).status_code == 200
    replay = await served.client.get(path, headers=headers)
    assert replay.status_code == 401  # a replay is still refused


async def test_a_clinic_may_hold_only_a_few_listings_at_once(served: Served, broker: BrokerContext) -> None:
    a = await enrol_clinic(broker, "klinikk-a")
    held = [asyncio.create_task(_poll(served, a, "wait=25")) for _ in range(3)]
    await served.held(3)
    refused = await _poll(served, a, "wait=25")
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    assert (await _poll(served, a, "wait=0")).status_code == 200  # an ordinary listing is not refused
    await _submit_and_dispatch(served, broker, ["klinikk-a"])
    for answer in await asyncio.gather(*held):
        assert answer.status_code == 200 and len(answer.json()["items"]) == 1


async def test_a_full_process_refuses_more_held_listings_with_503(settings: Settings, broker: BrokerContext) -> None:
    async with serving(msgspec.structs.replace(settings, inbox_held_max=1)) as served:
        a = await enrol_clinic(broker, "klinikk-a")
        b = await enrol_clinic(broker, "klinikk-b")
        first = asyncio.create_task(_poll(served, a, "wait=25"))
        await served.held(1)
        refused = await _poll(served, b, "wait=25")
        assert refused.status_code == 503 and int(refused.headers["retry-after"]) > 0
        await _submit_and_dispatch(served, broker, ["klinikk-a"])
        assert len((await first).json()["items"]) == 1


async def test_held_listings_answer_empty_when_the_server_stops(served: Served, broker: BrokerContext) -> None:
    a = await enrol_clinic(broker, "klinikk-a")
    held = asyncio.create_task(_poll(served, a, "wait=25"))
    await served.held(1)
    stopping = asyncio.create_task(served.stop())  # uvicorn's graceful shutdown, as on SIGTERM
    answer = await asyncio.wait_for(held, timeout=20)
    assert answer.status_code == 200 and answer.json() == {"items": [], "more": False}
    await asyncio.wait_for(stopping, timeout=20)  # and the server is not held up by it


async def test_a_killed_listener_connection_reconnects_and_wakes_every_waiter(database_url: str) -> None:
    woken: list[str | None] = []
    listener = InboxListener(database_url, woken.append, probe_seconds=1)
    listener.start()
    admin = await asyncpg.connect(database_url)
    try:
        await asyncio.wait_for(listener.connected.wait(), timeout=10)
        assert woken == [None]  # on connecting: whoever waited before it reads again
        first_pid = listener.backend_pid
        await admin.execute("SELECT pg_terminate_backend($1)", first_pid)
        for _ in range(200):
            if listener.backend_pid not in (None, first_pid):
                break
            await asyncio.sleep(0.05)
        assert listener.backend_pid not in (None, first_pid)
        assert woken == [None, None]  # everyone reads again: a wake-up sent while it was away is not lost
        clinic = uuid.uuid4()
        async with admin.transaction():
            await inbox_signal.notify(admin, [clinic])
            await asyncio.sleep(0.2)
            assert woken == [None, None]  # nothing before the commit
        for _ in range(200):
            if str(clinic) in woken:
                break
            await asyncio.sleep(0.05)
        assert woken == [None, None, str(clinic)]
        listening = await admin.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1", inbox_signal.APPLICATION_NAME
        )
        assert [r["pid"] for r in listening] == [listener.backend_pid]
    finally:
        await listener.stop()
        await admin.close()


async def test_ten_parallel_long_polls_of_one_clinic_hold_exactly_three(served: Served, broker: BrokerContext) -> None:
    a = await enrol_clinic(broker, "klinikk-a")
    polls = [asyncio.create_task(_poll(served, a, "wait=25")) for _ in range(10)]
    done, _ = await asyncio.wait(polls, timeout=15, return_when=asyncio.ALL_COMPLETED)
    refused = [t.result() for t in done]
    assert len(refused) == 7 and all(r.status_code == 429 for r in refused)
    assert served.waiters.held == 3
    await _submit_and_dispatch(served, broker, ["klinikk-a"])
    held = [await t for t in polls if t not in done]
    assert len(held) == 3 and all(len(r.json()["items"]) == 1 for r in held)
