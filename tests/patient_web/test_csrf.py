"""Every state-changing form needs its CSRF token (security.md control 7); the JSON APIs need none."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from referral_broker.services.context import BrokerContext
from tests.conftest import EnrolledClinic, referral_json
from tests.patient_web.conftest import csrf_of, form_token, good_form, manage_token_of, send_form

FORGED = "0" * 64 + "f" * 64


async def _post_routes(client: AsyncTestClient[Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every POST route a patient's browser uses, with a body that would otherwise be accepted."""
    receipt = await send_form(client, ["fysio-oslo"])
    token = manage_token_of(receipt.text)
    contact = {"message": "Et spørsmål", "reply_email": "", "about": "", "website": ""}
    return [("/send", good_form(["fysio-oslo"])), (f"/manage/{token}/withdraw", {}), ("/kontakt", contact)]


@pytest.mark.parametrize(
    ("lang", "title"),
    [("nb", "Skjemaet kunne ikke sendes"), ("en", "The form could not be sent")],
)
async def test_post_without_csrf_token_gets_a_clear_translated_403_page(
    client: AsyncTestClient[Any],
    broker: BrokerContext,
    clinics: dict[str, EnrolledClinic],
    lang: str,
    title: str,
) -> None:
    await client.get(f"/?lang={lang}")
    for path, data in await _post_routes(client):
        before = await broker.pool.fetchval("SELECT count(*) FROM referrals")
        response = await client.post(path, data=data)
        assert response.status_code == 403, path
        assert response.headers["content-type"].startswith("text/html")
        assert f"<h1>{title}</h1>" in response.text, path
        assert "Traceback" not in response.text
        assert await broker.pool.fetchval("SELECT count(*) FROM referrals") == before
    assert await broker.pool.fetchval("SELECT count(*) FROM referrals WHERE withdrawn_at IS NOT NULL") == 0


async def test_post_with_a_wrong_or_forged_csrf_token_is_refused(
    client: AsyncTestClient[Any], broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    routes = await _post_routes(client)
    real = await form_token(client, ["fysio-oslo"])
    for path, data in routes:
        for wrong in (FORGED, real[:-1] + ("0" if real[-1] != "0" else "1"), "x"):
            response = await client.post(path, data={**data, "_csrf_token": wrong})
            assert response.status_code == 403, (path, wrong)


async def test_csrf_token_from_another_visitor_is_refused(
    make_client: Any, broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    attacker, victim = await make_client(), await make_client()
    attackers_token = await form_token(attacker, ["fysio-oslo"])
    await victim.get("/")  # the victim has a CSRF cookie of their own
    response = await victim.post("/send", data={**good_form(["fysio-oslo"]), "_csrf_token": attackers_token})
    assert response.status_code == 403
    assert await broker.pool.fetchval("SELECT count(*) FROM referrals") == 0


async def test_post_without_the_csrf_cookie_is_refused(
    make_client: Any, broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    client = await make_client()
    token = await form_token(client, ["fysio-oslo"])
    client.cookies.clear()
    response = await client.post("/send", data={**good_form(["fysio-oslo"]), "_csrf_token": token})
    assert response.status_code == 403


async def test_form_pages_carry_a_token_and_the_api_needs_none(
    client: AsyncTestClient[Any], broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    page = await client.get("/send?clinic=fysio-oslo")
    assert len(csrf_of(page.text)) == 128
    client.cookies.clear()
    response = await client.post("/api/v1/referrals", json=referral_json(["fysio-oslo"]))
    assert response.status_code == 201, response.text
