"""Signing in and out of /ops: username, password and TOTP code in one form; logout ends the session
on the server. The session cookie is replaced at every login, and the one the browser held before is
ended, so a cookie planted or kept from earlier is worth nothing afterwards."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.response import Redirect, Template

from referral_broker.services import operators
from referral_broker.services.operators import LoginOutcome, SignedIn
from referral_broker.web.ops.access import (
    SESSION_COOKIE,
    broker_of,
    expired_cookie,
    session_cookie,
)
from referral_broker.web.ops.display import ops_page
from referral_broker.web.patient.client_address import client_of

_REFUSED = "ops.login.refused"
_THROTTLED = "ops.login.throttled"
_CODE_USED = "ops.login.code_used"


def _login_page(
    request: Request[Any, Any, Any], error: str | None, status_code: int = 200, headers: dict[str, str] | None = None
) -> Template:
    """`error` is the key of its text."""
    return ops_page(
        request, "ops/login.html", {"who": None, "error": error}, status_code=status_code, headers=headers or {}
    )


class SignInPages(Controller):
    path = "/"

    @get("/login", opt={"ops_public": True})
    async def login_form(self, request: Request[Any, Any, Any]) -> Response[Any]:
        if await operators.signed_in(broker_of(request), request.cookies.get(SESSION_COOKIE)):
            return Redirect("/ops", status_code=303)
        return _login_page(request, None)

    @post("/login", opt={"ops_public": True}, status_code=303)
    async def login(self, request: Request[Any, Any, Any]) -> Response[Any]:
        form = await request.form()
        broker = broker_of(request)
        result = await operators.log_in(
            broker,
            str(form.get("username") or ""),
            str(form.get("password") or ""),
            str(form.get("code") or ""),
            address=client_of(request, broker.settings.trusted_proxies),
            previous_session=request.cookies.get(SESSION_COOKIE),
        )
        if result.outcome == LoginOutcome.THROTTLED:
            minutes = int(operators.LOGIN_WINDOW.total_seconds())
            return _login_page(request, _THROTTLED, 429, {"retry-after": str(minutes)})
        if result.outcome == LoginOutcome.CODE_USED:
            return _login_page(request, _CODE_USED, 401)
        if result.outcome != LoginOutcome.SIGNED_IN or result.session_id is None:
            return _login_page(request, _REFUSED, 401)
        response: Response[Any] = Redirect("/ops", status_code=303)
        response.set_cookie(session_cookie(result.session_id))
        return response

    @post("/logout", opt={"ops_any_role": True}, status_code=303)
    async def logout(self, request: Request[Any, Any, Any], operator: NamedDependency[SignedIn]) -> Response[Any]:
        await operators.log_out(broker_of(request), operator)
        response: Response[Any] = Redirect("/ops/login", status_code=303)
        response.set_cookie(expired_cookie())
        return response
