"""How refusals and failures look to callers: per-field errors, clear reasons, never a traceback."""

from __future__ import annotations

import logging
import secrets
from typing import Any, cast

from asyncpg.exceptions import CharacterNotInRepertoireError, UntranslatableCharacterError
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException

from referral_broker.services.clinic_auth import NotAllowed, NotAuthenticated
from referral_protocol.errors import DomainError, FieldError, InvalidRequest, MalformedRequest

log = logging.getLogger(__name__)


#: PostgreSQL refuses text it cannot hold (a NUL byte, `\u0000` in jsonb). Requests are checked for such
#: bytes before any route runs (`web/readable_input`); these make anything that slips past a 400, not a 500.
UNSTORABLE_TEXT: tuple[type[Exception], ...] = (CharacterNotInRepertoireError, UntranslatableCharacterError)

#: The HTTP status of each refusal; the nearest class in the error's ancestry decides.
REFUSAL_STATUS: dict[type[DomainError], int] = {
    MalformedRequest: 400,
    InvalidRequest: 422,
    NotAuthenticated: 401,
    NotAllowed: 403,
    DomainError: 400,
}


def refusal_status(exc: DomainError) -> int:
    return next(REFUSAL_STATUS[c] for c in type(exc).__mro__ if c in REFUSAL_STATUS)


def invalid_request(_: Request[Any, Any, Any], exc: InvalidRequest) -> Response[dict[str, object]]:
    """422 names each wrong field; 400 when the request could not be read at all."""
    return Response(
        {"errors": [{"field": e.field, "code": e.code, "message": e.message} for e in exc.errors]},
        status_code=refusal_status(exc),
    )


def as_malformed(request: Request[Any, Any, Any], exc: Exception) -> MalformedRequest:
    """A request refused by PostgreSQL's text rules, as the 400 it is; logged (route only) as a gap to close."""
    if isinstance(exc, MalformedRequest):
        return exc
    log.warning(
        "text the database cannot hold reached it: %s on %s %s", type(exc).__name__, request.method, _route(request)
    )
    return MalformedRequest([FieldError("request", "unreadable", "holds text that cannot be stored (a zero byte)")])


def unstorable_text(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, object]]:
    return invalid_request(request, as_malformed(request, exc))


def _route(request: Request[Any, Any, Any]) -> str:
    # The route's template (`/manage/{token:str}`), never the path: a path may hold a secret (a manage
    # link's token) or forged log lines (CR/LF).
    route: Any = cast(dict[str, Any], request.scope).get("path_template") or "(no route)"
    return str(route)


def domain_error(_: Request[Any, Any, Any], exc: DomainError) -> Response[dict[str, object]]:
    return Response({"error": str(exc)}, status_code=refusal_status(exc))


def http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, object]]:
    return Response({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, object]]:
    incident = secrets.token_hex(6)
    # The route and the exception type only: a request's body or query may hold personal data.
    log.error("incident %s: %s on %s %s", incident, type(exc).__name__, request.method, _route(request), exc_info=exc)
    return Response(
        {"error": "something went wrong on our side; nothing you sent was kept", "incident": incident},
        status_code=500,
        media_type=MediaType.JSON,
    )


EXCEPTION_HANDLERS: dict[type[Exception], object] = {
    InvalidRequest: invalid_request,
    **dict.fromkeys(UNSTORABLE_TEXT, unstorable_text),
    DomainError: domain_error,
    HTTPException: http_error,
    Exception: internal_error,
}
