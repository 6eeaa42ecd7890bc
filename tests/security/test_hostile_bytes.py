"""No hostile byte causes a 5xx (security.md control 22): NUL, invalid UTF-8 and non-ASCII text in every path
parameter, query parameter, form field, header value and cookie, on every route of the app (patient pages
and API, /ops signed in as an operator, the signed clinic API). Each answer is 2xx–4xx, nothing is logged
as an incident, and a refusal of a page looks like the site's other pages.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_from_bytes

import msgspec
import pytest
from asyncpg.exceptions import CharacterNotInRepertoireError

from referral_broker.services import catalogue, monitoring
from referral_protocol.enrolment import KEY_REQUEST_FORMAT
from tests.security.every_route import Route, Site, every_route, form_fields, site_fixture  # noqa: F401 - fixture

#: As they travel in a URL (already percent-encoded).
IN_URL = {
    "nul": "%00",
    "nul inside": "ab%00cd",
    "control": "%1B%5B31m%07",
    "invalid utf-8": "%FF%FE",
    "overlong utf-8": "%C0%AF",
    "lone surrogate": "%ED%A0%80",
    "non-ascii": "%C3%A6%C3%B8%C3%A5",
    "bidi override and emoji": "%E2%80%AE%F0%9F%98%80",
}
#: As they travel in a form body: raw bytes, and percent-encoded.
IN_FORM = {
    "raw nul": b"a\x00b",
    "raw invalid utf-8": b"\xff\xfe",
    "raw non-ascii": "Kåre Ørnæs \u202e😀".encode(),
    "encoded nul": b"%00",
    "encoded invalid utf-8": b"%FF",
}
#: As header and cookie values (a server passes these bytes on; NUL is refused by real servers' parsers,
#: but an ASGI app must not rely on that).
IN_HEADER = {"nul": b"a\x00b", "latin-1": b"\xe6\xf8\xe5", "utf-8": "æøå😀".encode(), "escape": b"\x1b[31m"}
HEADERS = ("accept-language", "x-forwarded-for", "idempotency-key", "authorization", "x-csrftoken", "signature")
COOKIES = ("__Host-csrf", "__Host-lang", "__Host-rights", "__Host-rb-ops")


def _refusals_look_right(route: Route, response: Any, what: str) -> None:
    assert response.status_code < 500, (what, response.status_code, response.text[:500])
    if route.is_page and response.status_code in (400, 403, 404):
        assert response.headers["content-type"].startswith("text/html"), what
        assert "<h1>" in response.text and "</html>" in response.text, (what, response.text[:300])
    if route.template.startswith("/api/") and response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/json"), what


def _no_incident(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, "\n".join(r.getMessage() for r in errors[:5])


async def _send(site: Site, route: Route, path: str, form: bytes | None = None, headers: Any = None) -> Any:
    """The request a browser (or, on the clinic API, the clinic tool) would make, signed or with its token."""
    extra: list[tuple[bytes, bytes]] = list(headers or [])
    if route.is_clinic_api:
        body = b"{}" if route.method == "POST" else None
        signed = site.signed(route.method, path, body)
        extra = [(k.encode(), v.encode()) for k, v in signed.items()] + extra
        return await site.client.request(route.method, path, content=body, headers=extra, follow_redirects=False)
    if route.method == "GET":
        return await site.client.get(path, headers=extra, follow_redirects=False)
    if form is None:
        form = _form({**site.good, "_csrf_token": await site.csrf_token()})
    content_type = (b"content-type", b"application/x-www-form-urlencoded")
    if route.template.startswith("/api/"):
        content_type = (b"content-type", b"application/json")
    return await site.client.request(
        route.method, path, content=form, headers=[content_type, *extra], follow_redirects=False
    )


def _form(fields: dict[str, str], hostile: tuple[str, bytes] | None = None) -> bytes:
    pairs = [(k.encode(), quote_from_bytes(v.encode(), safe="").encode()) for k, v in fields.items()]
    if hostile is not None:
        name, raw = hostile
        pairs = [(k, raw if k == name.encode() else v) for k, v in pairs]
    return b"&".join(k + b"=" + v for k, v in pairs)


async def test_hostile_path_parameters_never_give_a_server_error(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    tried = 0
    for route in every_route(site.app):
        for name in route.path_parameters:
            for label, value in IN_URL.items():
                what = f"{route.method} {route.template} {name}={label}"
                response = await _send(site, route, site.concrete(route, {name: value}))
                _refusals_look_right(route, response, what)
                tried += 1
    assert tried >= 6 * len(IN_URL)  # manage token, clinic slug, delivery id, static file, schema path …
    _no_incident(caplog)


async def test_hostile_query_parameters_never_give_a_server_error(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    tried = set()
    for route in every_route(site.app):
        for name in (*route.query_parameters, "lang"):
            for label, value in IN_URL.items():
                what = f"{route.method} {route.template}?{name}={label}"
                response = await _send(site, route, f"{site.concrete(route)}?{name}={value}")
                _refusals_look_right(route, response, what)
                tried.add((route.template, name))
    assert {
        ("/ops/audit", "clinic"),
        ("/ops/audit", "since"),
        ("/", "city"),
        ("/api/v1/clinic/inbox", "after"),
    } <= tried
    _no_incident(caplog)


async def test_hostile_form_fields_never_give_a_server_error(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    posts = [r for r in every_route(site.app) if r.method == "POST" and not r.template.startswith("/api/")]
    assert {"/send", "/ops/login", "/rights/code", "/ops/clinics/{slug:str}/verify"} <= {r.template for r in posts}
    for route in posts:
        answers = set()
        for field in form_fields():
            for label, raw in IN_FORM.items():
                fields = {**site.good, "_csrf_token": await site.csrf_token()}
                form = _form(fields, (field, raw))
                response = await _send(site, route, site.concrete(route), form=form)
                _refusals_look_right(route, response, f"POST {route.template} {field}={label}")
                answers.add(response.status_code)
        # Past the CSRF check and the early refusal: the non-ASCII forms reached the route itself.
        assert answers - {400, 403}, (route.template, answers)
    _no_incident(caplog)


async def test_a_multipart_form_with_invalid_utf8_is_refused_not_a_server_error(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    boundary = "hostile-boundary"
    token = await site.csrf_token()
    for raw in (b"\xff\xfe", b"a\x00b"):
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="_csrf_token"\r\n\r\n{token}\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="username"\r\n\r\n'
            ).encode()
            + raw
            + f"\r\n--{boundary}--\r\n".encode()
        )
        for path in ("/ops/login", "/send", "/rights/code"):
            response = await site.client.post(
                path, content=body, headers={"content-type": f"multipart/form-data; boundary={boundary}"}
            )
            assert 400 <= response.status_code < 500, (path, raw, response.status_code, response.text[:300])
            assert response.headers["content-type"].startswith("text/html"), path
    _no_incident(caplog)


async def test_hostile_header_and_cookie_values_never_give_a_server_error(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    jar = "; ".join(f"{name}={value}" for name, value in site.client.cookies.items())
    for route in every_route(site.app):
        path = site.concrete(route)
        for label, raw in IN_HEADER.items():
            for header in HEADERS:
                response = await _send(site, route, path, headers=[(header.encode(), raw)])
                _refusals_look_right(route, response, f"{route.method} {route.template} {header}: {label}")
            for cookie in COOKIES:
                others = "; ".join(part for part in jar.split("; ") if not part.startswith(cookie + "="))
                header_value = f"{others}; {cookie}=".encode() + raw
                response = await _send(site, route, path, headers=[(b"cookie", header_value)])
                _refusals_look_right(route, response, f"{route.method} {route.template} cookie {cookie}: {label}")
    _no_incident(caplog)


@pytest.mark.parametrize(
    "token",
    ["æøå", "\u00ff" * 128, "😀" * 40, "0" * 64 + "é" * 64],
    ids=["short", "latin-1", "emoji", "valid-length"],
)
async def test_a_non_ascii_csrf_token_is_a_wrong_token_with_the_usual_page(
    site: Site, caplog: pytest.LogCaptureFixture, token: str
) -> None:
    caplog.set_level(logging.WARNING)
    before = await site.broker.pool.fetchval("SELECT count(*) FROM referrals")
    real = await site.csrf_token()
    for path, title in (("/send", "<h1>"), ("/ops/login", "The form has expired")):
        in_field = await site.client.post(path, data={**site.good, "_csrf_token": token})
        in_header = await site.client.post(path, data=site.good, headers=[(b"x-csrftoken", token.encode())])
        jar = "; ".join(f"{k}={v}" for k, v in site.client.cookies.items() if k != "__Host-csrf")
        in_cookie = await site.client.post(
            path,
            content=_form({**site.good, "_csrf_token": real}),
            headers=[
                (b"content-type", b"application/x-www-form-urlencoded"),
                (b"cookie", f"{jar}; __Host-csrf={token}".encode()),
            ],
        )
        for response in (in_field, in_header, in_cookie):
            assert response.status_code == 403, (path, response.status_code, response.text[:300])
            assert response.headers["content-type"].startswith("text/html") and title in response.text, path
    assert await site.broker.pool.fetchval("SELECT count(*) FROM referrals") == before
    _no_incident(caplog)


async def test_hostile_json_in_every_api_body_never_gives_a_server_error(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    strings = ["\\u0000", "a\\u0000b", "\\ud800", "æ\\u202e😀"]
    bodies = [b"\xff", b'"\xff"', b"\x00", b'{"clinics": "\\u0000"}']
    for s in strings:
        bodies += [
            f'{{"delivery_ids": ["{s}"]}}'.encode(),
            f'{{"refusals": [{{"delivery_id": "{s}", "reason": "{s}"}}]}}'.encode(),
            f'{{"format": "{s}", "slug": "{s}", "kind": "rotate", "encryption_key": "{s}", "replaces": "{s}", '
            f'"created_at": "{s}", "endorsed_by": "{s}", "endorsement": "{s}"}}'.encode(),
            f'{{"clinics": ["{s}"], "need": {{"category": "{s}", "description": "{s}"}}, '
            f'"patient": {{"name": "{s}", "email": "{s}", "phone": "{s}", "birth_date": "{s}"}}, '
            f'"consent": {{"version": "{s}", "accepted": true}}}}'.encode(),
        ]
    api_posts = [r for r in every_route(site.app) if r.method == "POST" and r.template.startswith("/api/")]
    assert len(api_posts) >= 4
    for route in api_posts:
        path = site.concrete(route)
        for body in bodies:
            headers = site.signed("POST", path, body) if route.is_clinic_api else {"content-type": "application/json"}
            response = await site.client.post(path, content=body, headers=headers)
            _refusals_look_right(route, response, f"POST {route.template} {body[:60]!r}")
    _no_incident(caplog)


async def test_a_key_request_holding_a_nul_that_reaches_postgresql_is_a_400(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    # Well-formed JSON for the calling clinic, with a key id PostgreSQL cannot hold: past every early check.
    body = msgspec.json.encode(
        {
            "format": KEY_REQUEST_FORMAT,
            "slug": site.clinic.slug,
            "kind": "rotate",
            "encryption_key": bytes(32),
            "created_at": datetime.now(UTC),
            "replaces": "k",
            "endorsed_by": "\x00",
            "endorsement": bytes(64),
        }
    )
    caplog.set_level(logging.WARNING)
    path = "/api/v1/clinic/keys"
    response = await site.client.post(path, content=body, headers=site.signed("POST", path, body))
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["code"] == "unreadable"
    assert any("CharacterNotInRepertoireError on POST /api/v1/clinic/keys" in r.getMessage() for r in caplog.records)
    _no_incident(caplog)


async def test_text_postgresql_refuses_is_a_400_with_the_usual_page_for_every_audience(
    site: Site, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refused(*_: Any, **__: Any) -> Any:
        raise CharacterNotInRepertoireError('invalid byte sequence for encoding "UTF8": 0x00')

    monkeypatch.setattr(catalogue, "choosable_clinics", refused)
    monkeypatch.setattr(monitoring, "audit_trail", refused)
    caplog.set_level(logging.WARNING)
    page = await site.client.get("/")
    assert page.status_code == 400 and "<h1>" in page.text, page.text[:300]
    api = await site.client.get("/api/v1/clinics")
    assert api.status_code == 400 and api.json()["errors"][0]["code"] == "unreadable", api.text
    ops = await site.client.get("/ops/audit")
    assert ops.status_code == 400 and "The request could not be read" in ops.text, ops.text[:300]
    _no_incident(caplog)


async def test_a_refusal_names_where_the_unreadable_bytes_were(site: Site) -> None:
    cases = [
        ("/api/v1/clinics?city=ab%00cd", [], "query city"),
        ("/api/v1/clinics?%FF=1", [], "query"),
        ("/api/v1/clinics", [(b"accept-language", b"nb\x00")], "header accept-language"),
        ("/static/site%00.css", [], "path"),
    ]
    for path, headers, where in cases:
        response = await site.client.get(path, headers=headers)
        assert response.status_code == 400, (path, response.text)
        assert response.json()["errors"] == [
            {
                "field": where,
                "code": "unreadable",
                "message": "holds a zero byte, a control character or text that is not UTF-8",
            }
        ], path
    page = await site.client.get("/?city=%00", headers={"accept-language": "en"})
    assert page.status_code == 400 and "<h1>The request could not be read</h1>" in page.text
