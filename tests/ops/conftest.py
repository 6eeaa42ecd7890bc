"""Fixtures of the operator side: an app on a clock the test moves, operator accounts, signing in."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pyotp
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from referral_broker.services import dispatch, operators
from referral_broker.services.context import BrokerContext
from referral_broker.services.settings import Settings
from referral_broker.web.app import create_app
from tests.browser.conftest import browser  # noqa: F401 - headless Debian Chromium
from tests.conftest import RecordingDoorbell, referral_json
from tests.ops.notice_sinks import mail_sink, webhook  # noqa: F401 - fixtures for every test here

#: https, so the client keeps and sends the `Secure` (`__Host-`) cookies.
BASE = "https://testserver.local"
CSRF_COOKIE = "__Host-csrf"
SESSION_COOKIE = "__Host-rb-ops"
PASSWORD = "correct horse battery staple"


class Clock:
    """The app's clock, moved by the test (session timeouts, TOTP time-steps, reminder periods)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@dataclass
class OpsApp:
    app: Litestar
    doorbell: RecordingDoorbell = field(default_factory=RecordingDoorbell)


@pytest.fixture
def ops_app(settings: Settings, clock: Clock) -> OpsApp:
    doorbell = RecordingDoorbell()
    unlimited = msgspec.structs.replace(settings, submit_rate=0)  # these tests submit more than a patient would
    return OpsApp(create_app(unlimited, doorbell_factory=lambda s: doorbell, clock=clock), doorbell)


@pytest.fixture
async def client(ops_app: OpsApp) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=ops_app.app, base_url=BASE) as c:
        yield c


@dataclass(frozen=True)
class Account:
    username: str
    role: str
    totp_secret: str
    password: str = PASSWORD


async def make_account(broker: BrokerContext, username: str, role: str = "operator") -> Account:
    made = await operators.create_operator(broker, username, role, PASSWORD, actor="test")
    return Account(made.username, role, made.totp_secret)


@pytest.fixture
async def operator(broker: BrokerContext) -> Account:
    return await make_account(broker, "olga", "operator")


@pytest.fixture
async def auditor(broker: BrokerContext) -> Account:
    return await make_account(broker, "aud", "auditor")


def code_at(account: Account, at: datetime) -> str:
    return pyotp.TOTP(account.totp_secret).at(at)


async def csrf_token(client: AsyncTestClient[Any]) -> str:
    if CSRF_COOKIE not in client.cookies:
        await client.get("/ops/login")
    return str(client.cookies[CSRF_COOKIE])


async def post_login(
    client: AsyncTestClient[Any],
    account: Account,
    clock: Clock,
    *,
    password: str | None = None,
    code: str | None = None,
) -> Any:
    return await client.post(
        "/ops/login",
        data={
            "username": account.username,
            "password": account.password if password is None else password,
            "code": code_at(account, clock()) if code is None else code,
            "_csrf_token": await csrf_token(client),
        },
        follow_redirects=False,
    )


async def sign_in(client: AsyncTestClient[Any], account: Account, clock: Clock) -> str:
    """Sign in and return the session cookie. Moves the clock one TOTP step on, so the next sign-in
    (each code is accepted once) has a fresh code."""
    response = await post_login(client, account, clock)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/ops"
    clock.advance(seconds=30)
    return str(client.cookies[SESSION_COOKIE])


async def post_form(client: AsyncTestClient[Any], path: str, **fields: str) -> Any:
    return await client.post(path, data={**fields, "_csrf_token": await csrf_token(client)}, follow_redirects=False)


async def submit_and_dispatch(
    client: AsyncTestClient[Any], broker: BrokerContext, clinics: list[str], **kw: str
) -> str:
    """A referral through the patient API, then the dispatch job's service; returns its reference."""
    response = await client.post("/api/v1/referrals", json=referral_json(clinics, **kw))
    assert response.status_code == 201, response.text
    reference: str = response.json()["reference"]
    referral_id: uuid.UUID = await broker.pool.fetchval("SELECT id FROM referrals WHERE reference = $1", reference)
    await dispatch.dispatch_referral(broker, referral_id)
    return reference
