"""Every /ops route, taken from the app's own route table so a new one cannot be missed: refused with no
session, with an expired session, and (for acting routes) to an auditor; every POST refused without
the right CSRF token (security.md control 7)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from litestar.middleware.csrf import generate_csrf_token
from litestar.testing import AsyncTestClient

from referral_broker.services.page_secrets import csrf_secret
from referral_broker.services.settings import Settings
from tests.ops.conftest import SESSION_COOKIE, Account, Clock, OpsApp, csrf_token, sign_in

#: Routes anyone may reach: the login form and its POST. Everything else under /ops needs a session.
PUBLIC = {("GET", "/ops/login"), ("POST", "/ops/login")}
#: Routes that change something but that every role may use.
ANY_ROLE = {("POST", "/ops/logout")}
#: Reading routes only the operator role may use: a customer-service message holds what a person wrote.
OPERATOR_ONLY = {("GET", "/ops/messages/{id}")}
#: Routes about one thing, which answer 404 when it does not exist (the harmless ids filled in here).
ABOUT_ONE = {("GET", "/ops/messages/{id}"), ("POST", "/ops/messages/{id}/answer"), ("POST", "/ops/messages/{id}/close")}


def ops_routes(app: Any) -> list[tuple[str, str]]:
    """(method, concrete path) for every /ops route, path parameters filled with harmless values."""
    found = []
    for route in app.routes:
        if not route.path.startswith("/ops"):
            continue
        path = re.sub(r"\{\w+:uuid\}", str(uuid.uuid4()), route.path)
        path = re.sub(r"\{\w+:str\}", "no-such-clinic", path)
        for method in sorted(route.methods - {"OPTIONS", "HEAD"}):
            found.append((method, path))
    return found


def _template(method: str, path: str) -> tuple[str, str]:
    return method, re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "{id}", path.replace("no-such-clinic", "{slug}"))


async def _call(client: AsyncTestClient[Any], method: str, path: str) -> Any:
    if method == "GET":
        return await client.get(path, follow_redirects=False)
    return await client.request(
        method,
        path,
        data={"_csrf_token": await csrf_token(client), "fingerprint": "x", "answer": "x"},
        follow_redirects=False,
    )


def _refused_for_want_of_a_session(method: str, response: Any) -> bool:
    if method == "GET":
        return response.status_code == 303 and response.headers["location"] == "/ops/login"
    return response.status_code == 401


def test_the_route_table_holds_the_routes_this_file_checks(ops_app: OpsApp) -> None:
    templates = {_template(m, p) for m, p in ops_routes(ops_app.app)}
    assert templates >= {
        ("GET", "/ops"),
        ("GET", "/ops/audit"),
        ("GET", "/ops/audit/verify"),
        ("POST", "/ops/logout"),
        ("POST", "/ops/deliveries/{id}/retry"),
        ("POST", "/ops/clinics/{slug}/suspend"),
        ("POST", "/ops/clinics/{slug}/reactivate"),
        ("POST", "/ops/clinics/{slug}/verify"),
        ("GET", "/ops/holds"),
        ("POST", "/ops/holds"),
        ("POST", "/ops/holds/release"),
        ("GET", "/ops/messages"),
        ("GET", "/ops/messages/{id}"),
        ("POST", "/ops/messages/{id}/answer"),
        ("POST", "/ops/messages/{id}/close"),
    }
    assert templates >= PUBLIC


async def test_every_ops_route_refuses_a_visitor_without_a_session(
    client: AsyncTestClient[Any], ops_app: OpsApp
) -> None:
    for method, path in ops_routes(ops_app.app):
        if (method, path) in PUBLIC:
            continue
        response = await _call(client, method, path)
        assert _refused_for_want_of_a_session(method, response), (method, path, response.status_code)


async def test_every_ops_route_refuses_an_expired_session(
    client: AsyncTestClient[Any], ops_app: OpsApp, operator: Account, clock: Clock
) -> None:
    routes = [r for r in ops_routes(ops_app.app) if r not in PUBLIC]
    for method, path in routes:
        await sign_in(client, operator, clock)
        clock.advance(minutes=16)  # past the idle timeout
        response = await _call(client, method, path)
        assert _refused_for_want_of_a_session(method, response), (method, path, response.status_code)


async def test_every_acting_route_refuses_an_auditor_who_may_still_read(
    client: AsyncTestClient[Any], ops_app: OpsApp, auditor: Account, clock: Clock
) -> None:
    await sign_in(client, auditor, clock)
    for method, path in ops_routes(ops_app.app):
        if (method, path) in PUBLIC | ANY_ROLE:
            continue
        response = await _call(client, method, path)
        if method == "GET" and _template(method, path) in OPERATOR_ONLY:
            assert response.status_code == 403, (path, response.status_code)
            assert "cannot open customer-service messages" in response.text
        elif method == "GET":
            assert response.status_code == 200, (path, response.status_code)
        else:
            assert response.status_code == 403, (method, path, response.status_code)
            assert "can read but not act" in response.text
    dashboard = (await client.get("/ops")).text
    assert "Suspend" not in dashboard and "Retry" not in dashboard  # no buttons that would be refused
    logout = await _call(client, "POST", "/ops/logout")  # every role may sign out
    assert logout.status_code == 303 and (await client.get("/ops", follow_redirects=False)).status_code == 303


async def test_an_operator_passes_the_guard_on_every_route(
    client: AsyncTestClient[Any], ops_app: OpsApp, operator: Account, clock: Clock
) -> None:
    """The refusals above are the guard's, not a broken route: an operator gets past it everywhere."""
    for method, path in ops_routes(ops_app.app):
        if (method, path) in PUBLIC | ANY_ROLE:
            continue
        await sign_in(client, operator, clock)
        response = await _call(client, method, path)
        passed = {200, 303, 409} | ({404} if _template(method, path) in ABOUT_ONE else set())
        assert response.status_code in passed, (method, path, response.status_code)


@pytest.mark.parametrize("token", ["missing", "wrong", "another sessions"])
async def test_every_post_route_refuses_a_missing_or_wrong_csrf_token(
    client: AsyncTestClient[Any], ops_app: OpsApp, operator: Account, clock: Clock, settings: Settings, token: str
) -> None:
    posts = [(m, p) for m, p in ops_routes(ops_app.app) if m == "POST"]
    assert ("POST", "/ops/logout") in posts and ("POST", "/ops/login") in posts
    for method, path in posts:
        await sign_in(client, operator, clock)
        real = await csrf_token(client)
        if token == "missing":
            data = {}
        elif token == "wrong":
            data = {"_csrf_token": real[:-4] + ("aaaa" if not real.endswith("aaaa") else "bbbb")}
        else:  # a validly signed token, but not the one in this browser's cookie
            data = {"_csrf_token": generate_csrf_token(csrf_secret(settings.keys_dir))}
        response = await client.request(method, path, data=data, follow_redirects=False)
        assert response.status_code == 403, (path, token, response.status_code)
        assert "The form has expired" in response.text
        # Nothing happened: still signed in (logout did not run), no session for a login.
        assert SESSION_COOKIE not in {h.split("=", 1)[0] for h in response.headers.get_list("set-cookie")}
    assert (await client.get("/ops", follow_redirects=False)).status_code == 200
