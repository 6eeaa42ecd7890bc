"""The long-polling inbox: a listing that, when nothing waits, is held until something does or `wait` runs out.

Waiting is put around the listing (`clinic_inbox.list_inbox`), which is unchanged. A waiter is registered
before the first read, so a wake-up sent between that read and the wait is not lost; after each wake-up (a
clinic id from `store.inbox_signal`, or "everyone" after the listener reconnected) the listing is read
again, so PostgreSQL stays the truth and a lost wake-up costs at most one wait (decision 0136).

The waiters live in one process (one `InboxWaiters` per app); counting them needs no lock, as nothing awaits
between the check and the count. A process holds at most `REFERRAL_BROKER_INBOX_HELD_MAX` requests and a
clinic at most `WAITS_PER_CLINIC` in it; above either the request is refused with a time to come back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from referral_broker.services import clinic_inbox
from referral_broker.services.context import BrokerContext
from referral_broker.store.clinics import ClinicRow
from referral_broker.store.inbox_signal import InboxListener
from referral_protocol.enrolment import InboxPage
from referral_protocol.errors import DomainError, FieldError, MalformedRequest

#: The longest a listing may be held, in seconds (below common proxies' 30 s and the clinic's 30 s timeout).
MAX_WAIT = 25
#: Concurrent held listings of one clinic in one process: its `watch` and desk, and a restarted one's leftover.
WAITS_PER_CLINIC = 3


#: Called when the server begins to stop, before it waits for the requests in progress (`cli/http_server.py`):
#: each app's `InboxWaiters.close`, so held listings answer at once rather than hold up the stop.
shutting_down: list[Callable[[], None]] = []


def server_stopping() -> None:
    for close in list(shutting_down):
        close()


class WaitRefused(DomainError):
    """Too many held listings (the process's cap: 503, or the clinic's: 429); come back after `retry_after` s."""

    def __init__(self, message: str, *, status: int, retry_after: int) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def parse_wait(raw: str | None) -> int:
    """The `wait` query parameter: whole seconds 0..MAX_WAIT, 0 when absent."""
    if raw is None or raw == "":
        return 0
    if not raw.isdecimal() or not 0 <= int(raw) <= MAX_WAIT:
        raise MalformedRequest([FieldError("wait", "out_of_range", f"whole seconds from 0 to {MAX_WAIT}")])
    return int(raw)


class InboxWaiters:
    """The held listings of one process, by clinic id; `wake` and `close` end their waits early."""

    def __init__(self, max_held: int, per_clinic: int = WAITS_PER_CLINIC) -> None:
        self.max_held = max_held
        self.per_clinic = per_clinic
        self.closing = False
        self._by_clinic: dict[str, set[asyncio.Event]] = {}
        self._held = 0

    @property
    def held(self) -> int:
        return self._held

    def wake(self, clinic_id: str | None) -> None:
        """Wake one clinic's waits, or (None) every wait in the process."""
        groups = self._by_clinic.values() if clinic_id is None else [self._by_clinic.get(clinic_id, set())]
        for events in groups:
            for event in events:
                event.set()

    def close(self) -> None:
        """The server is stopping: every held listing answers now, and no new one is held."""
        self.closing = True
        self.wake(None)

    @contextmanager
    def waiting(self, clinic_id: str) -> Iterator[asyncio.Event]:
        # No await from the checks to the counting: two requests cannot both take the last place.
        if self._held >= self.max_held:
            raise WaitRefused("this server holds as many waiting inbox requests as it can", status=503, retry_after=5)
        events = self._by_clinic.setdefault(clinic_id, set())
        if len(events) >= self.per_clinic:
            raise WaitRefused(
                f"this clinic already has {self.per_clinic} inbox requests waiting here", status=429, retry_after=5
            )
        event = asyncio.Event()
        events.add(event)
        self._held += 1
        try:
            yield event
        finally:
            self._held -= 1
            events.discard(event)
            if not events:
                del self._by_clinic[clinic_id]


#: A long poll's answer when nothing new came: not even key-change statements the clinic has acknowledged.
_NOTHING_NEW = InboxPage(items=[], more=False, next=None)


async def list_or_wait(
    ctx: BrokerContext,
    waiters: InboxWaiters,
    clinic: ClinicRow,
    limit: int,
    after: str | None,
    wait: int,
) -> InboxPage:
    """The listing at once when something waits (or `wait` is 0); otherwise the first non-empty listing
    within `wait` seconds, or the empty one when they are over (or the server is stopping)."""
    if wait <= 0 or waiters.closing:
        return await clinic_inbox.list_inbox(ctx, clinic, limit, after)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    with waiters.waiting(str(clinic.id)) as woken:
        while True:
            woken.clear()
            page, news = await clinic_inbox.list_inbox_and_news(ctx, clinic, limit, after)
            left = deadline - loop.time()
            if news:
                return page  # whole, key-change statements included: another machine of the clinic may need them
            if left <= 0 or waiters.closing:
                return _NOTHING_NEW
            try:
                await asyncio.wait_for(woken.wait(), timeout=left)
            except TimeoutError:
                return _NOTHING_NEW


def start_listening(ctx: BrokerContext, waiters: InboxWaiters) -> InboxListener:
    """The process's one listener, waking `waiters`; stop it (`await listener.stop()`) when the app stops."""
    listener = InboxListener(ctx.settings.database_url, waiters.wake)
    listener.start()
    return listener
