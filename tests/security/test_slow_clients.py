"""Slow and vanishing clients against `referral-broker serve` itself (security.md control 23; issue 21 items 3, 4).

Headers or a body trickled a little at a time are cut off at their bound, whatever the proxy in front does;
a client that hangs up mid-body is a client event (INFO, no incident id, rate-limited), not an ERROR incident.
The bounds are set low here (2 s) so each test takes seconds; the defaults are 10 s and 30 s.
"""

from __future__ import annotations

import logging
import re
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from referral_broker.web.slow_clients import HangUpLog
from tests.conftest import Servers
from tests.processes import Program, serving

BOUND = 2  # seconds, for headers and for the body
GIVE_UP = 6 * BOUND  # a connection still open by then was never going to be cut off


@dataclass
class Served:
    url: str
    server: Program

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


@pytest.fixture
def served(servers: Servers, clean_db: str, redis_url: str, keys_dir: Path, tmp_path: Path) -> Iterator[Served]:
    bounds = {"REFERRAL_BROKER_HEADER_TIMEOUT": f"{BOUND}s", "REFERRAL_BROKER_BODY_TIMEOUT": f"{BOUND}s"}
    with serving(
        clean_db,
        redis_url,
        keys_dir,
        tmp_path,
        REFERRAL_BROKER_SUBMIT_RATE="0",
        REFERRAL_BROKER_SUBMIT_REFUSED_RATE="0",
        **bounds,
    ) as (url, server):
        yield Served(url, server)


@dataclass
class Trickle:
    answer: bytes
    closed: bool


def trickle(port: int, opening: bytes, drip: bytes, every: float = 0.5) -> Trickle:
    """Send `opening`, then `drip` every `every` seconds, until the server closes or GIVE_UP seconds pass."""
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(opening)
            deadline = time.monotonic() + GIVE_UP
            while time.monotonic() < deadline:
                readable, _, _ = select.select([sock], [], [], every)
                if readable:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return Trickle(answer, closed=True)
                    answer += chunk
                elif drip:
                    sock.sendall(drip)
        except (BrokenPipeError, ConnectionResetError):
            return Trickle(answer, closed=True)
    return Trickle(answer, closed=False)


HEADERS_CASES = {
    "header_lines_one_by_one": (b"GET /healthz HTTP/1.1\r\nHost: x\r\n", b"X-Slow: 1\r\n"),
    "request_line_byte_by_byte": (b"GET /", b"a"),
    "nothing_at_all": (b"", b""),
    "next_request_on_a_kept_alive_connection": (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n",
        b"X-Slow: 1\r\n",
    ),
}


@pytest.mark.parametrize("case", HEADERS_CASES, ids=list(HEADERS_CASES))
def test_headers_that_never_finish_arriving_are_cut_off(served: Served, case: str) -> None:
    opening, drip = HEADERS_CASES[case]
    result = trickle(served.port, opening, drip)
    assert result.closed, f"{case}: the connection was still open after {GIVE_UP} s"
    assert result.answer.count(b"HTTP/1.1 200") == opening.count(b"\r\n\r\n")  # only complete requests answered
    assert httpx.get(f"{served.url}/healthz").status_code == 200  # and the server serves on


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/api/v1/referrals", "application/json"), ("/send", "application/x-www-form-urlencoded")],
    ids=["api", "form"],
)
def test_a_body_trickled_a_byte_at_a_time_is_answered_408_and_closed(
    served: Served, path: str, content_type: str
) -> None:
    opening = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: 4000\r\n\r\n".encode()
    )
    result = trickle(served.port, opening, b" ")
    assert result.closed, f"the connection was still open after {GIVE_UP} s"
    assert result.answer.startswith(b"HTTP/1.1 408 "), result.answer[:200]
    head, _, body = result.answer.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    if path == "/send":  # a person's browser gets the usual page, in Norwegian unless asked otherwise
        assert b"content-type: text/html" in head.lower() and b"<html" in body
    # A request that arrives at a normal pace is unaffected.
    assert httpx.post(f"{served.url}{path}", content=b"{}", headers={"content-type": content_type}).status_code in (
        403,  # the form without its CSRF token
        422,  # the API's per-field errors
    )


def test_clients_hanging_up_mid_body_are_client_events_not_incidents(served: Served) -> None:
    opening = (
        b"POST /api/v1/referrals HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n"
    )
    hang_ups = 30
    for _ in range(hang_ups):
        with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
            sock.sendall(opening + b'{"need": "')
            time.sleep(0.05)  # the app has started reading the body
    assert httpx.get(f"{served.url}/healthz").status_code == 200
    time.sleep(0.5)  # the last hang-up is handled
    log = served.server.output()
    assert "ERROR" not in log and "incident" not in log and "Traceback" not in log, log[-3000:]
    went_away = re.findall(r"^.*went away.*$", log, flags=re.MULTILINE)
    assert 1 <= len(went_away) <= 2, went_away  # the first one, and no line for each of the 29 that followed
    assert all(re.search(r"\bINFO\b", line) for line in went_away), went_away


def test_hang_ups_are_counted_into_one_line_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    hang_ups = HangUpLog(every_seconds=60, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="referral_broker.web.slow_clients"):
        for second in range(30):
            now[0] = 1000.0 + second
            hang_ups.note("POST", "/send")
        assert len(caplog.records) == 1  # the first, at once
        now[0] = 1061.0
        hang_ups.note("POST", "/api/v1/referrals")
    assert len(caplog.records) == 2
    assert "and 29 more since the last such line" in caplog.records[1].getMessage()
    assert all(r.levelno == logging.INFO for r in caplog.records)
