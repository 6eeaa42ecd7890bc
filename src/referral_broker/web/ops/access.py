"""Who may see and do what under /ops: one guard on the whole router, so no route can be forgotten.

Every route needs a live session unless it is marked `ops_public` (the login page). A route that
changes something (any method but GET/HEAD) needs the `operator` role unless marked `ops_any_role`
(logout); `auditor` accounts only read, and not what is marked `ops_operator_only` (a customer-service
message, which holds what a person wrote). The CSRF token of every form is checked before this, by the
app's CSRF middleware.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.exceptions import PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.response import Redirect

from referral_broker.services import operators
from referral_broker.services.context import BrokerContext
from referral_broker.services.operators import Role, SignedIn
from referral_broker.web.errors import UNSTORABLE_TEXT, as_malformed
from referral_broker.web.ops.display import ops_page
from referral_protocol.errors import MalformedRequest

SESSION_COOKIE = "__Host-rb-ops"
LOGIN_PATH = "/ops/login"
_READING = frozenset({"GET", "HEAD"})


class SignInRequired(Exception):
    """No session, or one that ended (logged out, idle too long, too old)."""


class RoleRequired(Exception):
    """Signed in, but the role may not do this."""

    def __init__(self, who: SignedIn) -> None:
        super().__init__(who.role)
        self.who = who


def session_cookie(value: str) -> Cookie:
    """`__Host-` prefix: Secure, Path=/ and no Domain, so no other site or subdomain can set or read it."""
    return Cookie(key=SESSION_COOKIE, value=value, path="/", secure=True, httponly=True, samesite="strict")


def expired_cookie() -> Cookie:
    return Cookie(
        key=SESSION_COOKIE, value="", path="/", secure=True, httponly=True, samesite="strict", max_age=0, expires=0
    )


def broker_of(connection: ASGIConnection[Any, Any, Any, Any]) -> BrokerContext:
    broker: BrokerContext = connection.app.state.broker
    return broker


def needs_operator_role(handler: BaseRouteHandler) -> bool:
    if handler.opt.get("ops_operator_only"):
        return True
    if handler.opt.get("ops_any_role"):
        return False
    methods: set[str] = set(getattr(handler, "http_methods", set()))
    return bool(methods - _READING)


async def require_session(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    if handler.opt.get("ops_public"):
        return
    who = await operators.signed_in(broker_of(connection), connection.cookies.get(SESSION_COOKIE))
    if who is None:
        raise SignInRequired()
    if needs_operator_role(handler) and who.role != Role.OPERATOR:
        raise RoleRequired(who)
    connection.state.ops_operator = who


def provide_operator(request: Request[Any, Any, Any]) -> SignedIn:
    who: SignedIn = request.state.ops_operator
    return who


def sign_in_required(request: Request[Any, Any, Any], _: SignInRequired) -> Response[Any]:
    """A page asks the browser to the login page; anything else is told 401."""
    if request.method in _READING:
        response: Response[Any] = Redirect(LOGIN_PATH, status_code=303)
    else:
        response = ops_page(
            request, "ops/refused.html", {"who": None, "problem": "signed-out"}, status_code=401, media_type="text/html"
        )
    response.set_cookie(expired_cookie())
    return response


def role_required(request: Request[Any, Any, Any], exc: RoleRequired) -> Response[Any]:
    problem = "role_private" if request.method in _READING else "role"  # a page only the operator role may read
    return ops_page(request, "ops/refused.html", {"who": exc.who, "problem": problem}, status_code=403)


def csrf_refused(request: Request[Any, Any, Any], _: PermissionDeniedException) -> Response[Any]:
    return ops_page(request, "ops/refused.html", {"who": None, "problem": "csrf"}, status_code=403)


def unreadable_refused(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """400: a path, query or form that is not readable text (`web/readable_input`), or that PostgreSQL cannot hold."""
    as_malformed(request, exc)  # logs a store-level refusal as the gap it is
    return ops_page(request, "ops/refused.html", {"who": None, "problem": "unreadable"}, status_code=400)


EXCEPTION_HANDLERS: Any = {
    SignInRequired: sign_in_required,
    RoleRequired: role_required,
    PermissionDeniedException: csrf_refused,
    MalformedRequest: unreadable_refused,
    **dict.fromkeys(UNSTORABLE_TEXT, unreadable_refused),
}
