"""Every request is readable text before any route sees it (security.md control 22).

A NUL byte, invalid UTF-8 or a control character can never be part of a valid path, query or header of
this service, and NUL or invalid UTF-8 never part of a valid form field; yet each reaches places that
fail on it with a 5xx (PostgreSQL refuses NUL in text, the form parser and `hmac.compare_digest` raise).
So they are refused once, early, with 400 and the usual page or JSON answer, instead of in every route:

- `ReadableInput`, a middleware on every route: the path, each query parameter and each header value;
- `ReadableRequest`, the app's request class: every form, wherever it is read (the CSRF check included).

Non-ASCII text is valid (names are Norwegian) and passes; the routes' own validation judges it.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_to_bytes

from litestar import Request
from litestar.datastructures import FormMultiDict
from litestar.enums import RequestEncodingType, ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from referral_protocol.errors import FieldError, MalformedRequest

#: C0 controls and DEL: never in a URL or header of this service (a header may hold a tab).
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
_HEADER_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
#: In a form only NUL is refused: a pasted text may hold tabs, line breaks or Word's vertical tab.
_FORM_CONTROL = re.compile(rb"\x00")


def unreadable(where: str) -> MalformedRequest:
    return MalformedRequest(
        [FieldError(where, "unreadable", "holds a zero byte, a control character or text that is not UTF-8")]
    )


def _readable(raw: bytes, forbidden: re.Pattern[bytes]) -> bool:
    if forbidden.search(raw):
        return False
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _pairs(encoded: bytes) -> list[tuple[bytes, bytes]]:
    """`name=value&…` (a query string or a form body) as percent-decoded bytes, nothing replaced."""
    pairs = []
    for part in encoded.split(b"&"):
        if part:
            name, _, value = part.partition(b"=")
            pairs.append((unquote_to_bytes(name.replace(b"+", b" ")), unquote_to_bytes(value.replace(b"+", b" "))))
    return pairs


def _field(kind: str, name: bytes) -> str:
    """How an error names the field: by its name when that name is itself readable (and not too long to echo)."""
    return f"{kind} {name.decode()}" if name and len(name) <= 64 and _readable(name, _CONTROL) else kind


def check_url_and_headers(scope: Scope) -> None:
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    # Some clients (httpx's ASGI transport) put the query in raw_path too; a path's own "?" is always %3F.
    if not _readable(unquote_to_bytes(raw_path.partition(b"?")[0]), _CONTROL):
        raise unreadable("path")
    for name, value in _pairs(scope.get("query_string", b"")):
        if not (_readable(name, _CONTROL) and _readable(value, _CONTROL)):
            raise unreadable(_field("query", name))
    for name, value in scope.get("headers", []):
        if _HEADER_CONTROL.search(value):
            raise unreadable(_field("header", name))


class ReadableInput:
    """Refuses a request whose path, query or headers are not readable text (see the module's notes)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            check_url_and_headers(scope)
        await self.app(scope, receive, send)


class ReadableRequest(Request[Any, Any, Any]):
    """A request whose form is refused (400) when a field holds NUL or is not UTF-8."""

    async def form(self) -> FormMultiDict:
        content_type, _ = self.content_type
        if content_type == RequestEncodingType.URL_ENCODED:
            for raw_name, raw_value in _pairs(await self.body()):
                if not (_readable(raw_name, _FORM_CONTROL) and _readable(raw_value, _FORM_CONTROL)):
                    raise unreadable(_field("form field", raw_name))
        try:
            form = await super().form()
        except UnicodeDecodeError:  # a multipart part that is not UTF-8
            raise unreadable("form") from None
        for name, value in form.multi_items():
            if "\x00" in name or (isinstance(value, str) and "\x00" in value):
                raise unreadable(_field("form field", name.encode("utf-8", "replace")))
        return form
