"""`referral-clinic watch`: pull on an interval, back off with jitter when the broker is away, stop cleanly.

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import FrameType

from referral_clinic.pull_report import PullReport
from referral_clinic.session import say

DEFAULT_INTERVAL = 60.0
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


def loop(
    cycle: Callable[[Stopper], PullReport | None],
    *,
    interval: float,
    max_backoff: float,
    stopper: Stopper,
) -> int:
    """Run `cycle` until stopped; a cycle returns None when it could not run (the folder busy, say)."""
    failures = 0
    cycles = 0
    while not stopper():
        report = cycle(stopper)
        cycles += 1
        failed = report is None or report.broker_error is not None or bool(report.local_failures)
        failures = failures + 1 if failed else 0
        if stopper():
            break
        delay = next_delay(failures, interval=interval, max_backoff=max_backoff)
        if failures:
            say(f"next try in {delay:.0f} s (failure {failures} in a row)")
        stopper.event.wait(delay)
    say(f"stopped after {cycles} pull(s) at {datetime.now(UTC).isoformat(timespec='seconds')}")
    return 0
