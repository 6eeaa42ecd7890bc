"""What stands in front of the rights pages: the session cookie a right code opens, the code sender the
app holds, and a per-client limit on asking for codes.

The per-address limit lives in the service (a few codes per address per hour, counted in PostgreSQL).
This one counts by client address in Redis, the way the submission limit does, so one client cannot
send codes to many addresses: a fixed window keyed by an HMAC of (window, client), so Redis never holds
an address and a key is useless once it expires. It fails open when Redis does not answer: the
per-address limit and the five tries per code still hold.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request
from litestar.datastructures import Cookie

from referral_broker.services.context import BrokerContext
from referral_broker.services.ports import CodeSender
from referral_broker.services.submit_limit import CounterUnavailable, WindowCounter
from referral_broker.web.patient.client_address import client_of

log = logging.getLogger(__name__)

#: `__Host-`: Secure, Path=/ and no Domain, so no other site or subdomain can set or read it. Like every
#: cookie of the site it is Secure; browsers accept that over http://127.0.0.1 and localhost too.
SESSION_COOKIE = "__Host-rights"

#: Code requests one client may make per window, whatever addresses it types.
CODE_REQUESTS_PER_CLIENT = 10
CODE_WINDOW_SECONDS = 600
_COUNTER_TTL_SECONDS = 2 * CODE_WINDOW_SECONDS


def session_cookie(token: str) -> Cookie:
    """A browser-session cookie; the server ends the session itself after its lifetime."""
    return Cookie(key=SESSION_COOKIE, value=token, path="/", secure=True, httponly=True, samesite="strict")


def ended_cookie() -> Cookie:
    return Cookie(
        key=SESSION_COOKIE, value="", path="/", secure=True, httponly=True, samesite="strict", max_age=0, expires=0
    )


def session_token(request: Request[Any, Any, Any]) -> str | None:
    return request.cookies.get(SESSION_COOKIE)


def code_sender_of(request: Request[Any, Any, Any]) -> CodeSender:
    """The app's one code sender (made with the app from the settings; see `routes.patient_lifespan`)."""
    sender: CodeSender = request.app.state.code_sender
    return sender


async def admit_code_request(request: Request[Any, Any, Any], broker: BrokerContext, counter: WindowCounter) -> int:
    """0 when this client may ask for a code now; otherwise the seconds until it may."""
    epoch = int(broker.clock().timestamp())
    window = epoch // CODE_WINDOW_SECONDS
    client = client_of(request, broker.settings.trusted_proxies)
    digest = broker.keys.vault.blind_index("rights-code-rate", f"{window}|{client}")
    try:
        count = await counter.hit(f"rights-code-rate:{digest.hex()[:40]}", _COUNTER_TTL_SECONDS)
    except CounterUnavailable:
        log.warning("the code request counter is unreachable; admitting without a per-client limit (fail-open)")
        return 0
    if count <= CODE_REQUESTS_PER_CLIENT:
        return 0
    return max(1, CODE_WINDOW_SECONDS - epoch % CODE_WINDOW_SECONDS)
