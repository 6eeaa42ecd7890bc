"""The long-polling inbox through the real programs: `referral-broker serve` (one or two processes) and
`worker`, `referral-clinic watch` with its default settings, this run's private PostgreSQL and Redis.

Bounds here are generous and functional (a referral on disk long before the old 60 s interval), not
performance targets; those are measured by `make bench` (docs/performance.md)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest

from devstack import free_port
from referral_broker.store.inbox_signal import APPLICATION_NAME
from referral_clinic.broker_client import BrokerClient
from referral_clinic.session import unlock
from referral_protocol.enrolment import InboxPage
from tests.e2e.test_pipeline_processes import PASSPHRASE, Broker, broker  # noqa: F401 - the fixture
from tests.processes import Program, program, wait_for_http, wait_for_value

pytestmark = pytest.mark.e2e

LISTENERS = f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{APPLICATION_NAME}'"  # noqa: S608 - a constant


def _client(folder: Path, url: str) -> BrokerClient:
    secrets = unlock(folder, PASSPHRASE).secrets
    return BrokerClient(url, signing_seed=secrets.signing_seed, signing_public=secrets.signing_public)


def _long_poll(folder: Path, url: str, wait: int = 25) -> tuple[InboxPage, float]:
    started = time.monotonic()
    with _client(folder, url) as client:
        page = client.fetch_inbox(10, wait=wait)
    return page, time.monotonic() - started


@contextmanager
def _second_server(b: Broker) -> Iterator[tuple[str, Program]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = Program([program("referral-broker"), "serve", "--port", str(port)], b.env, b.folder / "server-2.log")
    server.start()
    try:
        wait_for_http(f"{url}/healthz", server)
        yield url, server
    finally:
        server.stop()


async def _listener_pid(database_url: str, other_than: int | None = None, timeout: float = 30) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = [r["pid"] for r in await conn.fetch(LISTENERS.replace("count(*)", "pid"))]
            fresh = [p for p in pids if p != other_than]
            if fresh:
                return int(fresh[0])
            time.sleep(0.1)
        raise AssertionError("no inbox listener connection")
    finally:
        await conn.close()


def _held(futures: list[Future[tuple[InboxPage, float]]]) -> None:
    """Give the requests time to reach the broker and be held (nothing waits for them yet)."""
    time.sleep(2)
    assert not any(f.done() for f in futures), "a long poll came back before anything arrived"


async def test_watch_with_default_settings_has_a_referral_on_disk_within_seconds(broker: Broker) -> None:  # noqa: F811
    folder = broker.clinic("klinikk-a")
    broker.start_worker()
    inbox = broker.folder / "inbox"
    watcher = Program(
        [program("referral-clinic"), "watch", "--dir", str(folder), "--out", str(inbox)],
        broker.env,
        broker.folder / "watch.log",
    ).start()
    try:
        deadline = time.monotonic() + 30
        while "watching" not in watcher.output() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2)  # its first pull is done and its long poll is held
        submitted = time.monotonic()
        reference = broker.submit(["klinikk-a"])
        written = inbox / f"{reference}.json"
        while not written.exists() and time.monotonic() - submitted < 15:
            time.sleep(0.05)
        took = time.monotonic() - submitted
        assert written.exists(), watcher.output()
        assert took < 15  # the old default pulled every 60 s; with the long poll it is at most a second or so
        await wait_for_value(broker.database_url, "SELECT count(*) FROM deliveries WHERE status = 'acknowledged'", 1)
    finally:
        stopping = time.monotonic()
        watcher.signal(signal.SIGTERM)
        assert watcher.process is not None
        code = watcher.process.wait(timeout=20)
    log = watcher.output()
    assert code == 0 and "Traceback" not in log, log
    assert time.monotonic() - stopping < 10  # a held long poll does not hold up the stop
    assert "pulling as soon as the broker says something arrived" in log


async def test_several_api_processes_each_wake_their_waiting_clinics(broker: Broker) -> None:  # noqa: F811
    a = broker.clinic("klinikk-a")
    b = broker.clinic("klinikk-b")
    broker.start_worker()
    with _second_server(broker) as (second_url, _), ThreadPoolExecutor(max_workers=3) as pool:
        await wait_for_value(broker.database_url, LISTENERS, 2)  # one listener per api process
        futures = [
            pool.submit(_long_poll, a, broker.url),
            pool.submit(_long_poll, a, second_url),
            pool.submit(_long_poll, b, second_url),
        ]
        _held(futures)
        broker.submit(["klinikk-a", "klinikk-b"])
        for future in futures:
            page, took = future.result(timeout=40)
            assert len(page.items) == 1 and took < 20  # woken by the dispatch, not run out after 25 s


async def test_a_killed_listener_connection_is_reestablished_and_loses_nothing(broker: Broker) -> None:  # noqa: F811
    a = broker.clinic("klinikk-a")
    broker.start_worker()
    first = await _listener_pid(broker.database_url)
    with ThreadPoolExecutor(max_workers=1) as pool:
        held = pool.submit(_long_poll, a, broker.url)
        _held([held])
        conn = await asyncpg.connect(broker.database_url)
        try:
            assert await conn.fetchval("SELECT pg_terminate_backend($1)", first)
        finally:
            await conn.close()
        second = await _listener_pid(broker.database_url, other_than=first)
        assert second != first
        assert not held.done()  # the reconnect woke it; it read again, found nothing and waits on
        broker.submit(["klinikk-a"])
        page, took = held.result(timeout=40)
        assert len(page.items) == 1 and took < 20
    assert "inbox listener reconnected" in broker.server.output()


def test_a_held_request_is_answered_when_the_server_stops(broker: Broker) -> None:  # noqa: F811
    a = broker.clinic("klinikk-a")
    with ThreadPoolExecutor(max_workers=1) as pool:
        held = pool.submit(_long_poll, a, broker.url)
        _held([held])
        stopping = time.monotonic()
        broker.server.signal(signal.SIGTERM)
        page, _ = held.result(timeout=20)
        assert page.items == [] and not page.more  # the usual empty page, not a cut connection
        assert broker.server.process is not None
        # uvicorn ends by raising the signal it caught again, once it has shut down (not SIGKILLed)
        assert broker.server.process.wait(timeout=20) in (0, -signal.SIGTERM)
        assert "Finished server process" in broker.server.output()
        assert time.monotonic() - stopping < 15  # not held up by the request's 25 s
