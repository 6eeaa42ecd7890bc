"""Fixtures for the patient's web pages: an app over the test database and Redis, a few clinics, a form."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from referral_broker.services.context import BrokerContext
from referral_broker.services.settings import Settings
from referral_broker.web.app import create_app
from tests.conftest import EnrolledClinic, RecordingDoorbell, enrol_clinic

#: https, so the browser-like cookie jar of the test client sends the Secure `__Host-` cookies back.
BASE = "https://testserver.local"
FIXED_NOW = datetime(2026, 11, 20, 10, 30, 15, tzinfo=UTC)

ClientFactory = Callable[..., Any]


async def enrol_patient_clinics(broker: BrokerContext) -> dict[str, EnrolledClinic]:
    """Four active clinics in two cities, and one not yet verified (never choosable)."""
    made = {
        "fysio-oslo": await enrol_clinic(
            broker,
            "fysio-oslo",
            city="Oslo",
            categories=["physiotherapy", "orthopaedics"],
            description="Fysioterapi for idrettsskader, nær Majorstuen.",
        ),
        "psyk-oslo": await enrol_clinic(
            broker, "psyk-oslo", city="Oslo", categories=["psychology"], description="Samtaleterapi for voksne."
        ),
        "hud-bergen": await enrol_clinic(
            broker, "hud-bergen", city="Bergen", categories=["dermatology"], description="Hudlege i sentrum."
        ),
        "fysio-bergen": await enrol_clinic(broker, "fysio-bergen", city="Bergen", categories=["physiotherapy"]),
    }
    await enrol_clinic(broker, "ikke-klar", verify=False, city="Oslo", categories=["physiotherapy"])
    return made


@pytest.fixture
async def clinics(broker: BrokerContext) -> dict[str, EnrolledClinic]:
    return await enrol_patient_clinics(broker)


@pytest.fixture
async def make_client(settings: Settings) -> AsyncIterator[ClientFactory]:
    """Clients of apps built with changed settings (`submit_rate=…`, `customer_service_rate=…`) or a fixed clock."""
    opened: list[AsyncTestClient[Any]] = []

    async def make(*, clock: Callable[[], datetime] | None = None, **changes: Any) -> AsyncTestClient[Any]:
        app = create_app(
            msgspec.structs.replace(settings, **{"submit_rate": 1000, "customer_service_rate": 1000, **changes}),
            doorbell_factory=lambda s: RecordingDoorbell(),
            **({"clock": clock} if clock else {}),
        )
        client: AsyncTestClient[Any] = AsyncTestClient(app=app, base_url=BASE)
        await client.__aenter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        await client.__aexit__(None, None, None)


@pytest.fixture
async def client(make_client: ClientFactory) -> AsyncTestClient[Any]:
    made: AsyncTestClient[Any] = await make_client()
    return made


_CSRF = re.compile(r'name="_csrf_token" value="([0-9a-f]+)"')


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


async def form_token(client: AsyncTestClient[Any], clinics: list[str], lang: str | None = None) -> str:
    query = "&".join(f"clinic={c}" for c in clinics) + (f"&lang={lang}" if lang else "")
    page = await client.get(f"/send?{query}")
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


def good_form(clinics: list[str], **changes: str) -> dict[str, Any]:
    """What a browser posts for a correctly filled form (the checkbox sends its default value, `on`)."""
    return {
        "clinic": clinics,
        "category": "physiotherapy",
        "description": "Vondt i kneet etter fotballtrening",
        "name": "Kari Nordmann",
        "email": "kari@example.no",
        "phone": "412 34 567",
        "birth_date": "17.05.1990",
        "consent": "on",
        "consent_version": "2026-11-01",
        "website": "",
        **changes,
    }


async def send_form(
    client: AsyncTestClient[Any],
    clinics: list[str],
    *,
    lang: str | None = None,
    drop: tuple[str, ...] = (),
    token_from: list[str] | None = None,
    **changes: str,
) -> Any:
    """Open the form for `clinics` (or `token_from`, to post what the page would not offer), then post it."""
    token = await form_token(client, token_from or clinics, lang)
    data = {k: v for k, v in good_form(clinics, **changes).items() if k not in drop}
    return await client.post("/send", data={**data, "_csrf_token": token})


_MANAGE_LINK = re.compile(r'href="https://broker\.test/manage/([A-Za-z0-9_-]+)"')


def manage_token_of(receipt_html: str) -> str:
    match = _MANAGE_LINK.search(receipt_html)
    assert match, "the receipt has no manage link"
    return match.group(1)
