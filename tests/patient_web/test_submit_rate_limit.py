"""Submissions are limited per client, form and JSON API together, in Redis, without keeping addresses."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
from litestar.testing import AsyncTestClient

from referral_broker.services.context import BrokerContext
from referral_broker.services.settings import ConfigError, Settings
from referral_broker.web.app import create_app
from referral_broker.web.patient.client_address import client_address
from tests.conftest import EnrolledClinic, RecordingDoorbell, referral_json
from tests.patient_web.conftest import FIXED_NOW, send_form
from tests.patient_web.live_server import LiveServer, free_port


def _fixed() -> Any:
    return FIXED_NOW


async def _referrals(broker: BrokerContext) -> int:
    return int(await broker.pool.fetchval("SELECT count(*) FROM referrals"))


async def test_one_more_than_the_rate_is_refused_across_form_and_api_together(
    make_client: Any, broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    client: AsyncTestClient[Any] = await make_client(submit_rate=3, clock=_fixed)
    assert (await send_form(client, ["fysio-oslo"])).status_code == 200
    assert (await client.post("/api/v1/referrals", json=referral_json(["fysio-oslo"]))).status_code == 201
    assert (await send_form(client, ["fysio-oslo"])).status_code == 200

    refused_api = await client.post("/api/v1/referrals", json=referral_json(["fysio-oslo"]))
    assert refused_api.status_code == 429
    assert "too many accepted submissions" in refused_api.json()["error"]
    assert "try again in a minute" in refused_api.json()["error"]
    assert 1 <= int(refused_api.headers["retry-after"]) <= 60

    refused_form = await send_form(client, ["fysio-oslo"], lang="en", description="Sore knee, second try")
    assert refused_form.status_code == 429
    assert "We accept at most 3 requests a minute from the same network" in refused_form.text
    assert "This request has not been sent yet. What you typed is still in the form below." in refused_form.text
    assert "Sore knee, second try</textarea>" in refused_form.text  # nothing typed is lost
    assert 'name="submission"' in refused_form.text and "_csrf_token" in refused_form.text  # can be sent again
    assert "many requests" not in refused_form.text.lower()
    assert refused_form.headers["retry-after"] == refused_api.headers["retry-after"]
    assert refused_form.headers["cache-control"] == "no-store"  # it holds what was typed
    nb = await send_form(client, ["fysio-oslo"], lang="nb")
    assert nb.status_code == 429 and "Vi tar imot høyst 3 henvendelser i minuttet" in nb.text
    assert await _referrals(broker) == 3


async def test_typing_mistakes_do_not_use_up_the_accepted_submissions(
    make_client: Any, broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    client: AsyncTestClient[Any] = await make_client(submit_rate=5, submit_refused_rate=20, clock=_fixed)
    for _ in range(5):
        assert (await send_form(client, ["fysio-oslo"], email="wrong")).status_code == 422
    assert (await client.post("/api/v1/referrals", json={"clinics": []})).status_code == 422
    corrected = await send_form(client, ["fysio-oslo"], lang="en")
    assert corrected.status_code == 200 and "Your request has been sent" in corrected.text
    for _ in range(4):
        assert (await client.post("/api/v1/referrals", json=referral_json(["fysio-oslo"]))).status_code == 201
    assert (await client.post("/api/v1/referrals", json=referral_json(["fysio-oslo"]))).status_code == 429
    assert await _referrals(broker) == 5


async def test_refused_submissions_have_their_own_looser_limit(
    make_client: Any, broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    client: AsyncTestClient[Any] = await make_client(submit_rate=2, submit_refused_rate=4, clock=_fixed)
    for _ in range(4):
        assert (await send_form(client, ["fysio-oslo"], email="wrong")).status_code == 422
    refused = await send_form(client, ["fysio-oslo"], lang="en", email="still-wrong")
    assert refused.status_code == 429
    assert "sent many times in the last minute with something that had to be fixed" in refused.text
    assert 'value="still-wrong"' in refused.text
    api = await client.post("/api/v1/referrals", json=referral_json(["fysio-oslo"]))
    assert api.status_code == 429 and "too many refused submissions" in api.json()["error"]
    assert await _referrals(broker) == 0


async def test_a_repeat_of_the_same_submission_uses_no_place(
    make_client: Any, broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    client: AsyncTestClient[Any] = await make_client(submit_rate=1, clock=_fixed)
    key = {"idempotency-key": "repeat-uses-no-place-01"}
    body = referral_json(["fysio-oslo"])
    assert (await client.post("/api/v1/referrals", json=body, headers=key)).status_code == 201
    assert (await client.post("/api/v1/referrals", json=body, headers=key)).status_code == 200
    assert (await client.post("/api/v1/referrals", json=body, headers=key)).status_code == 200
    assert (await client.post("/api/v1/referrals", json=body)).status_code == 429
    assert await _referrals(broker) == 1


async def test_counter_holds_no_address_and_expires_soon(
    make_client: Any, broker: BrokerContext, clinics: dict[str, EnrolledClinic], redis_url: str
) -> None:
    client: AsyncTestClient[Any] = await make_client(submit_rate=5, clock=_fixed)
    await client.post(
        "/api/v1/referrals", json=referral_json(["fysio-oslo"]), headers={"x-forwarded-for": "198.51.100.7"}
    )
    store = aioredis.from_url(redis_url)
    try:
        keys = [k.decode() async for k in store.scan_iter("submit-rate:*")]
        assert len(keys) == 2  # the accepted count, and the refused count (given back: 0)
        assert not any("testclient" in k or "198.51.100.7" in k for k in keys)
        assert sorted([await store.get(k) for k in keys]) == [b"0", b"1"]
        for k in keys:
            assert 0 < await store.ttl(k) <= 120
        everything = [k async for k in store.scan_iter()]
        assert not any(b"testclient" in k or b"198.51.100" in k for k in everything)
    finally:
        await store.aclose()


async def test_forwarded_for_is_ignored_when_the_peer_is_not_a_trusted_proxy(
    make_client: Any, broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    client: AsyncTestClient[Any] = await make_client(submit_rate=2, clock=_fixed)
    statuses = [
        (
            await client.post(
                "/api/v1/referrals", json=referral_json(["fysio-oslo"]), headers={"x-forwarded-for": f"203.0.113.{i}"}
            )
        ).status_code
        for i in range(3)
    ]
    assert statuses == [201, 201, 429]


@pytest.fixture
def proxied_server(settings: Settings, clinics: dict[str, EnrolledClinic]) -> Iterator[LiveServer]:
    """The real app over real TCP, trusting 127.0.0.1 (where the test connects from) as its proxy."""
    app = create_app(
        msgspec.structs.replace(settings, submit_rate=1, trusted_proxies=("127.0.0.0/8", "10.0.0.0/8")),
        doorbell_factory=lambda s: RecordingDoorbell(),
        clock=_fixed,
    )
    server = LiveServer(app).start()
    yield server
    server.stop()


async def test_forwarded_for_names_the_client_behind_a_trusted_proxy(proxied_server: LiveServer) -> None:
    def submit(forwarded_for: str | None) -> int:
        headers = {"x-forwarded-for": forwarded_for} if forwarded_for else {}
        body = referral_json(["fysio-oslo"])
        return httpx.post(f"{proxied_server.url}/api/v1/referrals", json=body, headers=headers, timeout=10).status_code

    assert submit("203.0.113.1") == 201
    assert submit("203.0.113.2") == 201  # another client behind the same proxy has its own count
    assert submit("203.0.113.1") == 429
    assert submit("6.6.6.6, 203.0.113.1") == 429  # what the client itself wrote to the left is not believed
    assert submit("203.0.113.2, 10.1.2.3") == 429  # walked past a second trusted proxy
    assert submit(None) == 201  # the proxy's own address, once
    assert submit(None) == 429


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "trusted", "client"),
    [
        ("198.51.100.1", "203.0.113.9", (), "198.51.100.1"),
        ("198.51.100.1", "203.0.113.9", ("10.0.0.0/8",), "198.51.100.1"),
        ("10.0.0.2", "203.0.113.9", ("10.0.0.0/8",), "203.0.113.9"),
        ("10.0.0.2", "1.1.1.1, 203.0.113.9, 10.0.0.7", ("10.0.0.0/8",), "203.0.113.9"),
        ("10.0.0.2", "10.0.0.5, 10.0.0.7", ("10.0.0.0/8",), "10.0.0.5"),
        ("10.0.0.2", " , ", ("10.0.0.0/8",), "10.0.0.2"),
        ("10.0.0.2", None, ("10.0.0.0/8",), "10.0.0.2"),
        ("::1", "2001:db8::7", ("::1/128",), "2001:db8::7"),
        ("testclient", "203.0.113.9", ("10.0.0.0/8",), "testclient"),
    ],
)
def test_client_address_believes_only_trusted_proxies(
    peer: str, forwarded_for: str | None, trusted: tuple[str, ...], client: str
) -> None:
    assert client_address(peer, forwarded_for, trusted) == client


def test_trusted_proxies_setting_is_checked(settings: Settings) -> None:
    env = {"DATABASE_URL": settings.database_url}
    parsed = Settings.from_env({**env, "REFERRAL_BROKER_TRUSTED_PROXIES": " 10.0.0.1, 172.16.0.0/12 ,"})
    assert parsed.trusted_proxies == ("10.0.0.1/32", "172.16.0.0/12")
    assert Settings.from_env(env).trusted_proxies == ()
    assert Settings.from_env(env).submit_rate == 5
    with pytest.raises(ConfigError, match="REFERRAL_BROKER_TRUSTED_PROXIES"):
        Settings.from_env({**env, "REFERRAL_BROKER_TRUSTED_PROXIES": "10.0.0.300"})
    with pytest.raises(ConfigError, match="REFERRAL_BROKER_SUBMIT_RATE"):
        Settings.from_env({**env, "REFERRAL_BROKER_SUBMIT_RATE": "-1"})


class _Remember(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def test_limiter_fails_open_when_redis_is_unreachable(
    make_client: Any, broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    client: AsyncTestClient[Any] = await make_client(submit_rate=1, redis_url=dead_redis, clock=_fixed)
    remembered = _Remember()
    logging.getLogger("referral_broker.services.submit_limit").addHandler(remembered)
    try:
        assert (await send_form(client, ["fysio-oslo"])).status_code == 200
        assert (await client.post("/api/v1/referrals", json=referral_json(["fysio-oslo"]))).status_code == 201
        assert (await send_form(client, ["fysio-oslo"])).status_code == 200
    finally:
        logging.getLogger("referral_broker.services.submit_limit").removeHandler(remembered)
    assert await _referrals(broker) == 3
    assert len(remembered.lines) == 3 and all("fail-open" in line for line in remembered.lines)


async def test_rate_zero_turns_the_limit_off(
    make_client: Any, broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    client: AsyncTestClient[Any] = await make_client(submit_rate=0, clock=_fixed)
    for _ in range(7):
        assert (await client.post("/api/v1/referrals", json=referral_json(["fysio-oslo"]))).status_code == 201
    assert await _referrals(broker) == 7
