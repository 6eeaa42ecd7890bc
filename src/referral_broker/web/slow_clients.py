"""Request bodies that come too slowly, and clients that hang up before theirs is complete.

A request's whole body must arrive within `REFERRAL_BROKER_BODY_TIMEOUT` of the request reaching the app: a
body trickled a byte every few seconds is answered 408 and its connection closed (security.md control 23).
This bound is the app's own, so it holds under any ASGI server; the head of a request is bounded by the
server (`cli/http_server.py`).

A client that hangs up mid-body is no failure of ours: it is logged at INFO without an incident id, at most
one line a minute per process with the number of others since, so that a flood of them (a slow-client
attack, a flaky mobile network) cannot bury a real incident.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, cast

from litestar import Request, Response
from litestar.enums import ScopeType
from litestar.exceptions import ClientException
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

from referral_broker.web.errors import http_error
from referral_broker.web.patient.error_pages import is_page
from referral_broker.web.patient.page import render

log = logging.getLogger(__name__)


class BodyTooSlow(ClientException):
    status_code = 408

    def __init__(self) -> None:
        # `connection: close`: the rest of the body may still be trickling in; it is not read.
        super().__init__(detail="the request body did not arrive in time", headers={"connection": "close"})


class ClientWentAway(Exception):
    """The client hung up before its request body was complete."""


class HangUpLog:
    """At most one line per `every_seconds`, carrying the number of hang-ups left unlogged since the last."""

    def __init__(self, every_seconds: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_seconds = every_seconds
        self.clock = clock
        self.last_line: float | None = None
        self.unlogged = 0

    def note(self, method: str, route: str) -> None:
        now = self.clock()
        if self.last_line is not None and now - self.last_line < self.every_seconds:
            self.unlogged += 1
            return
        if self.unlogged:
            log.info(
                "a client went away before its request was complete (%s %s), and %d more since the last such line",
                method,
                route,
                self.unlogged,
            )
        else:
            log.info("a client went away before its request was complete (%s %s)", method, route)
        self.last_line, self.unlogged = now, 0


class SlowClientGuard:
    """The body deadline (a Litestar middleware) and the answers to its two exceptions, for one app."""

    def __init__(self, body_seconds: float, hang_ups: HangUpLog | None = None) -> None:
        self.body_seconds = body_seconds
        self.hang_ups = hang_ups or HangUpLog()

    def middleware(self, app: ASGIApp) -> ASGIApp:
        async def bounded(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            await app(scope, self._bounded_receive(receive), send)

        return bounded

    def _bounded_receive(self, receive: Receive) -> Receive:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_seconds
        body_complete = False

        async def bounded_receive() -> ReceiveMessage:
            nonlocal body_complete
            if body_complete:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(deadline - loop.time(), 0.0))
            except TimeoutError:
                raise BodyTooSlow from None
            if message["type"] == "http.disconnect":
                raise ClientWentAway
            body_complete = not message.get("more_body", False)
            return message

        return bounded_receive

    def too_slow(self, request: Request[Any, Any, Any], exc: BodyTooSlow) -> Response[Any]:
        if not is_page(request):
            return http_error(request, exc)
        return render(
            request,
            "patient/error.html",
            status_code=408,
            switch_url=None,
            headers=dict(exc.headers or {}),
            problem="too_slow",
        )

    def went_away(self, request: Request[Any, Any, Any], exc: ClientWentAway) -> Response[bytes]:
        route: Any = cast(dict[str, Any], request.scope).get("path_template") or "(no route)"
        self.hang_ups.note(request.method, route)
        return Response(b"", status_code=400)  # nobody is left to read it

    @property
    def exception_handlers(self) -> dict[type[Exception], object]:
        return {BodyTooSlow: self.too_slow, ClientWentAway: self.went_away}
