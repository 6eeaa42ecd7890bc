"""Security headers on every response, error pages included (security.md control 8).

HSTS goes only with answers to requests that came over https (the scheme uvicorn took from a trusted proxy's
X-Forwarded-Proto, see `cli/http_server.py`): RFC 6797 7.2 forbids it over plain http, and a
developer's `http://127.0.0.1` must not be pinned to https.
"""

from __future__ import annotations

from litestar.types import Message, Scope

HEADERS: dict[str, str] = {
    "content-security-policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
    # Everything this service answers is personal or changes by the second; nothing may be cached. (A route may
    # set its own: the empty referral form is `private, no-cache` so Back keeps its one-time key, decision 0064.)
    "cache-control": "no-store",
}
HSTS = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")
_ENCODED = [(k.encode(), v.encode()) for k, v in HEADERS.items()]


async def add_security_headers(message: Message, scope: Scope) -> None:
    """A `before_send` hook: unlike middleware it also sees responses for unmatched routes (404, 405)."""
    if message["type"] == "http.response.start":
        present = {name.lower() for name, _ in message.get("headers", [])}
        ours = [*_ENCODED, HSTS] if scope.get("scheme") == "https" else _ENCODED
        message["headers"] = [*message.get("headers", []), *((k, v) for k, v in ours if k not in present)]
