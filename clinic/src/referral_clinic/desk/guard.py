"""The desk's front door (security.md control 24): only this computer's user, only through the opened link.

- The server listens on 127.0.0.1 only (server.py); nothing here can be told to listen elsewhere.
- The browser is opened on `/start?token=…`, a random one-time token that is swapped for an HttpOnly,
  SameSite=Strict cookie (as Jupyter and Datasette do). Every other request needs that cookie (401).
- A request whose `Host` is not the loopback address and port we serve is refused (400): a web page
  elsewhere that points its own name at 127.0.0.1 (DNS rebinding) never reaches a page.
- Every action (a POST) needs the page's CSRF token, and a same-origin `Origin` when the browser sends one (403).
- Every answer forbids framing, inline script and script from anywhere else (the CSP allows only the
  desk's own static/desk.js), and caching.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any

LOOPBACK = "127.0.0.1"

SECURITY_HEADERS = [
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    # same-origin, not no-referrer: under no-referrer Chromium sends `Origin: null` with our own forms
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("Cache-Control", "no-store"),  # health data: never kept in the browser's cache
]


def _token() -> str:
    return secrets.token_urlsafe(32)


@dataclass
class Guard:
    port: int
    start_token: str | None = field(default_factory=_token)
    session: str = field(default_factory=_token)
    csrf: str = field(default_factory=_token)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def host(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def origin(self) -> str:
        return f"http://{self.host}"

    @property
    def start_url(self) -> str:
        return f"{self.origin}/start?token={self.start_token}"

    @property
    def cookie_name(self) -> str:
        # one per port: two desks (two clinic folders) on one computer do not overwrite each other's
        return f"referral_desk_{self.port}"

    def host_ok(self, environ: Mapping[str, Any]) -> bool:
        return environ.get("HTTP_HOST") == self.host

    def swap_token(self, given: str) -> bool:
        """True once for the start link's token; never again, whoever asks."""
        with self._lock:
            if self.start_token is None or not hmac.compare_digest(given.encode(), self.start_token.encode()):
                return False
            self.start_token = None
            return True

    def cookie_header(self) -> tuple[str, str]:
        return ("Set-Cookie", f"{self.cookie_name}={self.session}; HttpOnly; SameSite=Strict; Path=/")

    def has_cookie(self, environ: Mapping[str, Any]) -> bool:
        try:
            jar = SimpleCookie(environ.get("HTTP_COOKIE", ""))
        except CookieError:
            return False
        morsel = jar.get(self.cookie_name)
        return morsel is not None and hmac.compare_digest(morsel.value.encode(), self.session.encode())

    def action_ok(self, environ: Mapping[str, Any], form: Mapping[str, str]) -> bool:
        """A POST from one of our own pages: the CSRF token matches, and the browser says it is same-origin."""
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and origin != self.origin:
            return False
        site = environ.get("HTTP_SEC_FETCH_SITE")
        if site is not None and site not in ("same-origin", "none"):
            return False
        given = form.get("csrf", "")
        return hmac.compare_digest(given.encode(), self.csrf.encode())
