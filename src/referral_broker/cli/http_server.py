"""How `serve` runs uvicorn: a deadline on request headers, and whom to believe about the client and scheme.

uvicorn bounds only the idle time between kept-alive requests, and forgets even that once a byte arrives:
headers sent a line every few seconds hold a connection open for ever (slowloris; security.md control 23).
`HeaderDeadline` closes a connection whose request headers are not complete `header_seconds` after their
first byte (or after the connection opened). The body has its own bound in the app (`web/slow_clients.py`),
which holds under any server.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from referral_broker.services import inbox_waiting
from referral_broker.services.settings import Settings


class HeaderDeadline(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        header_seconds: float,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.header_seconds = header_seconds
        self.header_deadline: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        # One deadline for the whole head of a request: trickling bytes never pushes it back.
        if self.header_deadline is None:
            self.header_deadline = self.loop.call_later(self.header_seconds, self._headers_too_slow)

    def _disarm(self) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
            self.header_deadline = None

    def _headers_too_slow(self) -> None:
        self.header_deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # an answer is still being made: close when it is sent
        else:
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        # Bytes between requests start the next request's head (the keep-alive timer is cancelled by them).
        if self.cycle is None or self.cycle.response_complete:
            self._arm()
        super().data_received(data)

    def on_message_begin(self) -> None:
        self._arm()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def shutdown(self) -> None:
        # uvicorn calls this on every connection when it begins to stop, and then waits for the answers
        # in progress: held inbox listings must answer now, not when their wait runs out.
        inbox_waiting.server_stopping()
        super().shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options besides the address, the same for `serve` and for the tests that stand in for it."""
    trusted = list(settings.trusted_proxies)
    return {
        # A partial, not a subclass made on the fly: `--workers N` pickles it into each worker process.
        "http": functools.partial(HeaderDeadline, header_seconds=settings.header_read_seconds),
        # The scheme (HSTS goes only over https) and the client's address are taken from X-Forwarded-Proto and
        # X-Forwarded-For only when the peer is one of REFERRAL_BROKER_TRUSTED_PROXIES, as `client_of` does;
        # uvicorn's own default would believe any process on the loopback interface.
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted or None,
        "access_log": False,  # a manage link's path holds a secret token; access logs would keep it
        "timeout_graceful_shutdown": 20,
    }
