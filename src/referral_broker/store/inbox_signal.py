"""Wake-ups for clinics waiting on their inbox: PostgreSQL NOTIFY on one channel, the payload a clinic id only.

`notify` runs inside the transaction that makes something available (a dispatch, a queued notice), so
PostgreSQL sends it at that commit and never for a rolled-back one. `InboxListener` is each api process's
one connection that LISTENs; it hands each clinic id to a callback and, when its connection is lost,
reconnects with back-off; on each connect it calls the callback with None ("anyone may have missed one"). The
listings themselves stay the truth: a wake-up only says "read again" (decision 0136).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import asyncpg

from referral_broker.store.pool import Executor

log = logging.getLogger(__name__)

CHANNEL = "clinic_inbox"
#: How the listening connection shows in `pg_stat_activity` (one per api process).
APPLICATION_NAME = "referral-broker inbox listener"
#: How often the listener checks its connection is alive: a killed backend is usually noticed at once
#: (the socket closes), a silently dropped network path only by this probe.
PROBE_SECONDS = 10.0


async def notify(conn: Executor, clinic_ids: Iterable[uuid.UUID]) -> None:
    """Wake the clinics' waiting inbox requests when this transaction commits (no-op for none)."""
    ids = sorted({str(c) for c in clinic_ids})
    if ids:
        await conn.execute("SELECT pg_notify($1, c) FROM unnest($2::text[]) AS c", CHANNEL, ids)


class InboxListener:
    """One LISTEN connection for a process; `wake(clinic_id)` for each notice, `wake(None)` after a reconnect."""

    def __init__(
        self,
        dsn: str,
        wake: Callable[[str | None], None],
        *,
        first_backoff: float = 0.2,
        max_backoff: float = 5.0,
        probe_seconds: float = PROBE_SECONDS,
    ) -> None:
        self._dsn = dsn
        self._wake = wake
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff
        self._probe_seconds = probe_seconds
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.backend_pid: int | None = None  # the listening connection's server process (tests kill it)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="inbox-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        backoff = self._first_backoff
        ever_connected = False
        while True:
            try:
                conn: asyncpg.Connection = await asyncpg.connect(
                    self._dsn, timeout=10, server_settings={"application_name": APPLICATION_NAME}
                )
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("inbox listener cannot connect (%s); retrying in %.1f s", type(exc).__name__, backoff)
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not a secret
                backoff = min(backoff * 2, self._max_backoff)
                continue
            try:
                lost = _ended(conn)
                await conn.add_listener(CHANNEL, self._on_notification)
                self.backend_pid = conn.get_server_pid()
                self.connected.set()
                backoff = self._first_backoff
                if ever_connected:
                    log.info("inbox listener reconnected; waking every waiting clinic")
                ever_connected = True
                # A wake-up sent while it was away (or before it first connected) is lost: everyone reads again.
                self._wake(None)
                await self._watch(conn, lost)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("inbox listener lost its connection (%s)", type(exc).__name__)
            except Exception:
                # Not foreseen, but the listener must not end: without it every wait runs its full time.
                log.exception("inbox listener failed; reconnecting")
                await asyncio.sleep(backoff)
            finally:
                self.connected.clear()
                self.backend_pid = None
                if not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=2))
            log.warning("inbox listener connection ended; reconnecting")

    async def _watch(self, conn: asyncpg.Connection, lost: asyncio.Event) -> None:
        """Return when the connection is gone: closed by the server, or not answering a probe."""
        while not conn.is_closed():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), timeout=self._probe_seconds)
            if lost.is_set() or conn.is_closed():
                return
            await conn.fetchval("SELECT 1", timeout=self._probe_seconds)

    def _on_notification(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        self._wake(str(payload))


def _ended(conn: asyncpg.Connection) -> asyncio.Event:
    """An event set when asyncpg sees `conn` end (the server closed it, or the socket broke)."""
    lost = asyncio.Event()
    conn.add_termination_listener(lambda _c: lost.set())
    return lost
