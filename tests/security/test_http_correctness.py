"""HTTP as browsers, proxies and other sites expect it: HEAD wherever GET works, one charset in a
Content-Type, and a referral only from a JSON body (so no other site can post one from a visitor's browser).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import referral_json
from tests.patient_web.live_server import LiveServer
from tests.security.every_route import Site, every_route, site_fixture  # noqa: F401 - fixture

#: Headers that may differ between two answers to the same GET.
_MAY_DIFFER = {"set-cookie", "date", "content-length"}


async def test_head_answers_wherever_get_does_with_its_status_and_headers_and_no_body(site: Site) -> None:
    gets = [r for r in every_route(site.app) if r.method == "GET"]
    assert {"/", "/ops", "/static/{file_path:path}", "/api/v1/clinic/inbox"} <= {r.template for r in gets}
    for route in gets:
        path = site.concrete(route)
        signed = site.signed("GET", path) if route.is_clinic_api else {}
        get = await site.client.get(path, headers=signed, follow_redirects=False)
        signed = site.signed("HEAD", path) if route.is_clinic_api else {}
        head = await site.client.head(path, headers=signed, follow_redirects=False)
        what = f"HEAD {route.template}"
        assert head.status_code == get.status_code, (what, head.status_code, get.status_code)
        assert head.content == b"", what
        same = {k: v for k, v in get.headers.items() if k not in _MAY_DIFFER}
        assert {k: v for k, v in head.headers.items() if k not in _MAY_DIFFER} == same, what
        assert ("content-length" in head.headers) == ("content-length" in get.headers), what


def test_head_over_a_real_server_gives_the_length_of_the_get_and_no_body(live: LiveServer) -> None:
    for path in ("/", "/ops/login", "/static/site.css", "/api/v1/consent"):
        get = httpx.get(f"{live.url}{path}", timeout=10)
        head = httpx.head(f"{live.url}{path}", timeout=10)
        assert (head.status_code, get.status_code) == (200, 200), path
        assert head.content == b"", path
        assert head.headers["content-type"] == get.headers["content-type"], path
        assert int(head.headers["content-length"]) == len(get.content), path


async def test_every_content_type_names_one_charset(site: Site) -> None:
    answers: dict[str, Any] = {}
    for route in every_route(site.app):
        if route.method == "GET":
            path = site.concrete(route)
            signed = site.signed("GET", path) if route.is_clinic_api else {}
            answers[route.template] = await site.client.get(path, headers=signed, follow_redirects=False)
    answers["404 page"] = await site.client.get("/no-such-page")
    answers["400 page"] = await site.client.get("/?city=%00")
    answers["403 page"] = await site.client.post("/send", data={"_csrf_token": "wrong"})
    answers["400 json"] = await site.client.get("/api/v1/consent?x=%00")
    for what, response in answers.items():
        content_type = response.headers.get("content-type", "")
        assert content_type.lower().count("charset=") <= 1, (what, content_type)
    assert answers["/"].headers["content-type"] == "text/html; charset=utf-8"
    assert answers["404 page"].headers["content-type"] == "text/html; charset=utf-8"
    assert answers["/metrics"].headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded", "multipart/form-data", None],
)
async def test_a_referral_not_sent_as_json_is_refused_with_415_and_nothing_stored(
    site: Site, content_type: str | None
) -> None:
    # What a page on another site can make a visitor's browser send without asking: a "simple" request.
    body = httpx.Request("POST", "/", json=referral_json(["fysio-oslo"])).content
    headers = {"content-type": content_type} if content_type else {}
    before = await site.broker.pool.fetchval("SELECT count(*) FROM referrals")
    response = await site.client.post("/api/v1/referrals", content=body, headers=headers)
    assert response.status_code == 415, response.text
    assert "application/json" in response.json()["error"]
    assert await site.broker.pool.fetchval("SELECT count(*) FROM referrals") == before


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"])
async def test_a_referral_sent_as_json_is_accepted(site: Site, content_type: str) -> None:
    body = httpx.Request("POST", "/", json=referral_json(["fysio-oslo"])).content
    response = await site.client.post("/api/v1/referrals", content=body, headers={"content-type": content_type})
    assert response.status_code == 201, response.text


async def test_malformed_json_is_a_400_naming_the_body_and_wrong_fields_stay_422(site: Site) -> None:
    for body in (b"{not json", b"", b"\xff", b'{"clinics": [', b"[" * 20_000):
        response = await site.client.post(
            "/api/v1/referrals", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400, (body[:20], response.text)
        assert response.json()["errors"][0]["field"] == "body", body[:20]
    ack = b"{not json"
    path = "/api/v1/clinic/inbox/ack"
    response = await site.client.post(path, content=ack, headers=site.signed("POST", path, ack))
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "body", response.text
    wrong = await site.client.post("/api/v1/referrals", json=referral_json(["fysio-oslo"], email="x@y"))
    assert wrong.status_code == 422 and "patient.email" in {e["field"] for e in wrong.json()["errors"]}
