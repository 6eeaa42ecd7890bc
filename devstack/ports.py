"""Loopback ports for private servers: never the machine's shared ones, and a fresh one when taken."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

LOOPBACK = "127.0.0.1"
# The machine's shared servers.  Private servers never listen there, and
# nothing here ever connects there.
SHARED_PORTS = frozenset({5432, 6379})

_START_ATTEMPTS = 5  # fresh ports tried when the chosen one is taken before we bind it


class ServerUnavailable(RuntimeError):
    """A private server could not be found, started or stopped."""


class PortTaken(ServerUnavailable):
    """The port was free when chosen but someone else bound it first."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (never 5432 or 6379).

    Somebody may take it before our server binds it; the ``start_*`` functions
    retry with a new port when that happens.
    """
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port = int(sock.getsockname()[1])
        if port not in SHARED_PORTS:
            return port
    raise ServerUnavailable("the kernel handed out no usable ephemeral port on 127.0.0.1")


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Poll until something accepts TCP connections on host:port, or raise."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        remaining = deadline - time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=max(0.05, min(1.0, remaining))):
                return
        except OSError as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            raise ServerUnavailable(
                f"nothing accepted connections on {host}:{port} within {timeout:.1f}s (last error: {last_error})"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def check_port(port: int) -> None:
    if not 0 < port < 65536:
        raise ValueError(f"not a TCP port: {port}")
    if port in SHARED_PORTS:
        raise ServerUnavailable(
            f"port {port} belongs to the machine's shared server; private servers must use another port "
            "(pass port=None to get a free one)"
        )


class _Startable(Protocol):
    def start(self) -> None: ...


_Server = TypeVar("_Server", bound=_Startable)


def start_on_a_port(port: int | None, make: Callable[[int], _Server]) -> _Server:
    """Start on `port`, or on a free port, trying a fresh one if another process binds it first."""
    attempts = 1 if port is not None else _START_ATTEMPTS
    for attempt in range(attempts):
        server = make(port if port is not None else free_port())
        try:
            server.start()
        except PortTaken:
            if attempt + 1 >= attempts:
                raise
            continue
        return server
    raise AssertionError("unreachable")  # pragma: no cover
