"""`referral-clinic watch`: pull when the broker says something waits (a long-polling inbox request), or on
a fixed interval; back off with jitter when the broker is away; stop cleanly.

The loop owns no state of its own: each cycle is an ordinary pull under the folder's lock, and the
ledger makes every pull idempotent, so a cycle cut short (a crash, SIGKILL) leaves nothing a later
cycle cannot finish. The first SIGINT or SIGTERM lets the current step finish — the envelope being
written is written and acknowledged, the rest stays at the broker — and then the loop ends; a second
one abandons the step at once, which is safe for the same reason.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import Enum
from types import FrameType

from referral_clinic.pull_report import PullReport
from referral_clinic.session import say

DEFAULT_INTERVAL = 60.0
#: Seconds the broker is asked to hold an empty inbox request (its most: 25, below common proxies' 30 s).
DEFAULT_WAIT = 25
#: Seconds at least between two long-polling requests that found nothing: at most 3 a minute from an idle clinic.
IDLE_SPACING = 20.0
DEFAULT_MAX_BACKOFF = 900.0


class Stopper:
    """Set by the first SIGINT/SIGTERM; the second raises KeyboardInterrupt to abandon the current step."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self) -> bool:
        return self.event.is_set()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()
        say(f"{signal.Signals(signum).name}: stopping after the current step (again to stop at once)")

    @contextmanager
    def installed(self) -> Iterator[Stopper]:
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def next_delay(
    failures: int, *, interval: float, max_backoff: float, uniform: Callable[[float, float], float] = random.uniform
) -> float:
    """The wait before the next pull: the interval ±10 %, or after failures an exponential back-off capped at
    `max_backoff`, with "equal jitter" (half fixed, half random) so many clinics do not return in step."""
    if failures == 0:
        return uniform(interval * 0.9, interval * 1.1)
    ceiling = min(max_backoff, interval * 2.0 ** min(failures, 30))
    return uniform(ceiling / 2, ceiling)


class Waited(Enum):
    """How a long-polling inbox request ended."""

    NEWS = "news"  # something waits: pull now
    NOTHING = "nothing"  # held for the time asked and empty: ask again at once
    TOO_SOON = "too-soon"  # empty, and answered much sooner than asked: the broker (or a proxy) does not hold
    FAILED = "failed"  # the broker could not be asked: back off


def wait_for_news(
    ask: Callable[[], bool | None],
    *,
    wait: float,
    interrupted: Callable[[], bool],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Waited:
    """Ask the broker (`ask`: a long-polling inbox request, True when something waits; False when empty;
    None when it failed) in a helper thread, so a stop does not wait for the broker's answer."""
    outcome: list[bool | None] = []
    done = threading.Event()

    def asking() -> None:
        try:
            outcome.append(ask())
        finally:
            done.set()

    started = clock()
    threading.Thread(target=asking, name="referral-clinic-long-poll", daemon=True).start()
    while not done.wait(0.2):
        if interrupted():
            return Waited.NOTHING  # the caller stops; the thread ends with the broker's answer
    if not outcome or outcome[0] is None:
        return Waited.FAILED
    if outcome[0]:
        return Waited.NEWS
    if clock() - started < wait / 2:
        return Waited.TOO_SOON
    # However long the broker held it, an idle clinic asks at most 60 / IDLE_SPACING times a minute.
    while (rest := IDLE_SPACING - (clock() - started)) > 0 and not interrupted():
        sleep(min(rest, 0.2))
    return Waited.NOTHING


def loop(
    cycle: Callable[[Stopper], PullReport | None],
    *,
    interval: float,
    max_backoff: float,
    stopper: Stopper,
    long_poll: Callable[[Stopper], Waited] | None = None,
) -> int:
    """Run `cycle` until stopped; a cycle returns None when it could not run (the folder busy, say).

    With `long_poll` the wait between pulls is the broker's: after a pull it asks the broker to answer when
    something arrives, and pulls as soon as it does. A broker that answers at once anyway is not asked
    again sooner than every `interval`, so nothing spins."""
    failures = 0
    cycles = 0
    pull = True
    while not stopper():
        if pull:
            report = cycle(stopper)
            cycles += 1
            failed = report is None or report.broker_error is not None or bool(report.local_failures)
            failures = failures + 1 if failed else 0
            if stopper():
                break
            if failures or long_poll is None:
                _pause(failures, interval=interval, max_backoff=max_backoff, stopper=stopper)
                continue
        if long_poll is None:  # a fixed interval pulls every time (it continued above)
            continue
        waited = long_poll(stopper)
        pull = waited in (Waited.NEWS, Waited.FAILED)
        if waited is Waited.TOO_SOON:
            _pause(0, interval=interval, max_backoff=max_backoff, stopper=stopper)
        elif waited is Waited.FAILED:
            failures += 1
            _pause(failures, interval=interval, max_backoff=max_backoff, stopper=stopper)
    say(f"stopped after {cycles} pull(s) at {datetime.now(UTC).isoformat(timespec='seconds')}")
    return 0


def _pause(failures: int, *, interval: float, max_backoff: float, stopper: Stopper) -> None:
    delay = next_delay(failures, interval=interval, max_backoff=max_backoff)
    if failures:
        say(f"next try in {delay:.0f} s (failure {failures} in a row)")
    stopper.event.wait(delay)
