"""Refusals and failures as pages, in the visitor's language, for every path a browser visits.

The JSON API, the schema and the probes keep the JSON answers of `web/errors.py`; these handlers hand
those paths straight back to it.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    InternalServerException,
    NotFoundException,
    PermissionDeniedException,
    TooManyRequestsException,
)
from litestar.exceptions.http_exceptions import RequestEntityTooLarge

from referral_broker.web.errors import UNSTORABLE_TEXT, as_malformed, http_error, internal_error, invalid_request
from referral_broker.web.patient.manage_pages import not_found_page
from referral_broker.web.patient.page import render
from referral_protocol.errors import MalformedRequest

_NOT_PAGES = ("/api/", "/schema", "/protocol/", "/healthz", "/readyz", "/metrics", "/static/")
_PROBLEMS = {403: "csrf", 413: "too_large", 429: "too_many"}


def is_page(request: Request[Any, Any, Any]) -> bool:
    return not request.url.path.startswith(_NOT_PAGES)


def refusal_page(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """403 (the CSRF check: the only 403 a patient's browser meets), 404, 413 and 429 as pages."""
    if not is_page(request):
        return http_error(request, exc)
    if exc.status_code == 404:
        return not_found_page(request)
    return render(
        request, "patient/error.html", status_code=exc.status_code, switch_url=None, problem=_PROBLEMS[exc.status_code]
    )


def unreadable_page(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """400: a path, query, header or form that is not readable text (`web/readable_input`), or text that
    PostgreSQL cannot hold. Only a broken or hostile client sends it; the page says so without naming bytes."""
    malformed = as_malformed(request, exc)
    if not is_page(request):
        return invalid_request(request, malformed)
    return render(request, "patient/error.html", status_code=400, switch_url=None, problem="unreadable")


def failure_page(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """An unexpected failure: logged with an incident id by `internal_error`, then a page naming that id."""
    answer = internal_error(request, exc)
    if not is_page(request):
        return answer
    incident = answer.content["incident"] if isinstance(answer.content, dict) else ""
    return render(request, "patient/error.html", status_code=500, switch_url=None, problem="generic", incident=incident)


PAGE_EXCEPTION_HANDLERS: dict[type[Exception], object] = {
    PermissionDeniedException: refusal_page,
    NotFoundException: refusal_page,
    RequestEntityTooLarge: refusal_page,
    TooManyRequestsException: refusal_page,
    MalformedRequest: unreadable_page,
    **dict.fromkeys(UNSTORABLE_TEXT, unreadable_page),
    InternalServerException: failure_page,
    Exception: failure_page,
}
