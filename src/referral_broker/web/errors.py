"""How refusals and failures look to callers: per-field errors, clear reasons, never a traceback."""

from __future__ import annotations

import logging
import secrets
from typing import Any, cast

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException

from referral_broker.domain.errors import DomainError, InvalidRequest
from referral_broker.services.clinic_auth import NotAllowed, NotAuthenticated

log = logging.getLogger(__name__)


#: The HTTP status of each refusal; the nearest class in the error's ancestry decides.
REFUSAL_STATUS: dict[type[DomainError], int] = {
    InvalidRequest: 422,
    NotAuthenticated: 401,
    NotAllowed: 403,
    DomainError: 400,
}


def refusal_status(exc: DomainError) -> int:
    return next(REFUSAL_STATUS[c] for c in type(exc).__mro__ if c in REFUSAL_STATUS)


def invalid_request(_: Request[Any, Any, Any], exc: InvalidRequest) -> Response[dict[str, object]]:
    return Response(
        {"errors": [{"field": e.field, "code": e.code, "message": e.message} for e in exc.errors]},
        status_code=refusal_status(exc),
    )


def domain_error(_: Request[Any, Any, Any], exc: DomainError) -> Response[dict[str, object]]:
    return Response({"error": str(exc)}, status_code=refusal_status(exc))


def http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, object]]:
    return Response({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, object]]:
    incident = secrets.token_hex(6)
    # The route and the exception type only: a request's body or query may hold personal data, and its
    # path may hold a secret (a manage link's token) or forged log lines (CR/LF): the route's template
    # (`/manage/{token:str}`) says where without either.
    route: Any = cast(dict[str, Any], request.scope).get("path_template") or "(no route)"
    log.error(
        "incident %s: %s on %s %s",
        incident,
        type(exc).__name__,
        request.method,
        route,
        exc_info=exc,
    )
    return Response(
        {"error": "something went wrong on our side; nothing you sent was kept", "incident": incident},
        status_code=500,
        media_type=MediaType.JSON,
    )


EXCEPTION_HANDLERS: dict[type[Exception], object] = {
    InvalidRequest: invalid_request,
    DomainError: domain_error,
    HTTPException: http_error,
    Exception: internal_error,
}
