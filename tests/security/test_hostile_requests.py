"""Hostile requests to the running app (uvicorn on a free port): each refused or neutralised, and the
service still serving afterwards (security.md controls 9, 10, 13 and 14).

Covered elsewhere: one byte over the cap → 413 for the API and the form
(tests/test_clinic_api.py::test_body_one_byte_over_the_cap_is_refused,
tests/patient_web/test_referral_form.py::test_body_over_the_cap_gets_a_page_and_nothing_is_stored).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from referral_broker.services.context import BrokerContext
from referral_broker.services.settings import Settings
from tests.conftest import referral_json
from tests.patient_web.live_server import LiveServer

FORGED = "FORGED-LOG-LINE-7Q"


def _still_serving(live: LiveServer) -> None:
    assert httpx.get(f"{live.url}/healthz", timeout=10).status_code == 200
    accepted = httpx.post(f"{live.url}/api/v1/referrals", json=referral_json(["klinikk-a"]), timeout=10)
    assert accepted.status_code == 201, accepted.text


def _raw(live: LiveServer, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


def _errors(response: httpx.Response) -> list[tuple[str, str]]:
    return [(e["field"], e["code"]) for e in response.json()["errors"]]


def test_oversized_bodies_are_refused_even_without_a_length(live: LiveServer, settings: Settings) -> None:
    url = f"{live.url}/api/v1/referrals"
    json_type = {"content-type": "application/json"}
    too_big = b"{" + b" " * settings.max_body_bytes + b"}"
    assert httpx.post(url, content=too_big, headers=json_type, timeout=10).status_code == 413

    def chunks() -> Iterator[bytes]:  # chunked: no Content-Length to refuse up front
        for _ in range(settings.max_body_bytes // 1024 + 2):
            yield b" " * 1024

    try:
        status = httpx.post(url, content=chunks(), headers=json_type, timeout=10).status_code
    except httpx.HTTPError:  # the server may close the connection instead of reading the rest
        status = 413
    assert status == 413
    form = httpx.post(f"{live.url}/send", content=b"a=" + b"x" * settings.max_body_bytes, timeout=10)
    assert form.status_code in (403, 413)  # refused before (CSRF) or at the cap; never read whole
    _still_serving(live)


def test_pathological_json_is_refused_by_name(live: LiveServer) -> None:
    url = f"{live.url}/api/v1/referrals"
    for body in (b"[" * 20_000, b'{"clinics":' * 5_000, b'{"clinics": ["\xff"]}', b"\xfe\xff{}", b"\x00"):
        response = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=10)
        assert response.status_code == 400 and _errors(response)[0][0] == "body", (body[:20], response.text)
    _still_serving(live)


def test_very_long_values_are_refused_by_name(live: LiveServer) -> None:
    url = f"{live.url}/api/v1/referrals"
    cases: list[tuple[dict[str, Any], dict[str, str], str]] = [
        (referral_json(["klinikk-a"], description="x" * 10_001), {}, "need.description"),
        (referral_json(["klinikk-a"], name="N" * 5_000), {}, "patient.name"),
        (referral_json(["klinikk-a"], email="e" * 3_000 + "@example.no"), {}, "patient.email"),
        (referral_json(["klinikk-a"], phone="4" * 1_000), {}, "patient.phone"),
        (referral_json(["a" * 64]), {}, "clinics[0]"),
        (referral_json([f"k{i}" for i in range(11)]), {}, "clinics"),
        (referral_json(["klinikk-a"]), {"Idempotency-Key": "k" * 5_000}, "Idempotency-Key"),
    ]
    for body, headers, field in cases:
        response = httpx.post(url, json=body, headers=headers, timeout=10)
        assert response.status_code == 422, (field, response.text[:300])
        assert field in [f for f, _ in _errors(response)], (field, response.text[:300])
    assert httpx.get(f"{live.url}/?lang=" + "x" * 6_000, timeout=10).status_code in (200, 414, 431)
    huge_header = _raw(
        live, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\nConnection: close\r\n\r\n"
    )
    assert not huge_header.startswith(b"HTTP/1.1 200") or len(huge_header) < 1000
    _still_serving(live)


def test_header_injection_and_a_forged_host_are_neutralised(live: LiveServer, settings: Settings) -> None:
    page = httpx.get(f"{live.url}/?lang=en%0d%0aSet-Cookie:%20injected=1%0d%0aX-Injected:%201", timeout=10)
    assert page.status_code in (200, 400)
    assert "x-injected" not in page.headers
    assert not any("injected" in value.lower() for value in page.headers.get_list("set-cookie"))
    # A bare CR or LF inside a header is refused by the server's parser, not passed on.
    answer = _raw(live, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Evil: a\rSet-Cookie: b=1\r\nConnection: close\r\n\r\n")
    assert b"b=1" not in answer
    # The private link is built from the configured public URL, never from what the client says it asked.
    receipt = httpx.post(
        f"{live.url}/api/v1/referrals",
        json=referral_json(["klinikk-a"]),
        headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http"},
        timeout=10,
    )
    assert receipt.status_code == 201, receipt.text
    assert receipt.json()["manage_url"].startswith(settings.public_url + "/manage/")
    _still_serving(live)


async def test_crlf_in_fields_and_paths_never_forges_a_log_line_nor_logs_a_secret(
    live: LiveServer, broker: BrokerContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    crlf = f"\r\n2026-11-22 06:00:00,000 ERROR referral_broker: {FORGED}"
    body = referral_json(["klinikk-a"], name=f"Kari{crlf}", description=f"vondt{crlf}")
    assert httpx.post(f"{live.url}/api/v1/referrals", json=body, timeout=10).status_code in (201, 422)
    assert httpx.post(f"{live.url}/api/v1/referrals", json={f"x{crlf}": 1}, timeout=10).status_code == 422
    # CR/LF in a path is refused before any route (web/readable_input.py).
    assert httpx.get(f"{live.url}/manage/tok%0d%0a{FORGED}", timeout=10).status_code == 400
    # An unexpected failure on a path holding a secret token: the incident is logged by its route's
    # template, so neither the token nor anything a client put in a path (CR/LF) reaches the log.
    token = secrets.token_urlsafe(32)
    await broker.pool.execute("ALTER TABLE referrals RENAME TO referrals_gone")
    try:
        failed = httpx.get(f"{live.url}/manage/{token}", timeout=10)
    finally:
        await broker.pool.execute("ALTER TABLE referrals_gone RENAME TO referrals")
    assert failed.status_code == 500 and "Traceback" not in failed.text
    deadline = time.monotonic() + 10  # Litestar's log queue hands records over from a thread of its own
    while not any("incident" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    server_side = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]  # not our client
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in server_side)
    assert "incident" in logged and "/manage/{token}" in logged, logged[-2000:]
    assert FORGED not in logged and token not in logged
    _still_serving(live)
