"""How many referrals one client may submit per minute, through the form and the JSON API together.

Two counts per client and one-minute window: submissions *accepted* (`REFERRAL_BROKER_SUBMIT_RATE`) and
submissions *refused* because a field was wrong (`REFERRAL_BROKER_SUBMIT_REFUSED_RATE`, looser). A patient who
mistypes five times and then gets it right is not locked out by the mistakes (issue 22, item 4).

Both are checked atomically under parallel requests: a submission first takes a place in *both* counts (one
`INCR` each, which is the check), and when its outcome is known gives back the place it did not use (accepted:
the refused place; refused: the accepted place; a repeat of an earlier submission or a refusal by the limit
itself: both). So at every moment each count is at least what it will finally be, and forty parallel
submissions cannot all slip under a limit before any of them is counted.

Each counter's key is an HMAC of the client's address and the minute (keyed from the broker's data secret), so
the counter store never holds an IP address, and it expires two minutes later.

Fail-open: when the counter store (Redis) cannot be reached, submissions are admitted and a warning is logged.
Redis is a doorbell that may go away; a referral is health care someone is waiting for, and the other guards
(CSRF, the honeypot, the body cap, validation) hold without Redis.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from referral_broker.services.context import BrokerContext

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60
#: The counter outlives its window a little, so a clock skew between servers cannot reset it early.
COUNTER_TTL_SECONDS = 2 * WINDOW_SECONDS


class CounterUnavailable(Exception):
    """The counter store did not answer in time."""


@runtime_checkable
class WindowCounter(Protocol):
    """A port: count one hit under `key`, which disappears `ttl_seconds` after its first hit; or take one back."""

    async def hit(self, key: str, ttl_seconds: int) -> int: ...

    async def take_back(self, key: str) -> None:
        """Undo one hit under `key`, if it still exists (never creates it, never goes below zero)."""


Refusal = Literal["accepted", "refused"]


@dataclass
class Admission:
    """A submission's places in the counts; `settle` with its outcome gives back the place it did not use."""

    admitted: bool
    retry_after_seconds: int = 0
    #: Which limit refused it: "accepted" (enough referrals were sent) or "refused" (too many mistakes).
    limit: Refusal | None = None
    counter: WindowCounter | None = None
    _held: dict[str, str] = field(default_factory=dict)

    async def settle(self, outcome: Literal["accepted", "refused", "neither"]) -> None:
        """Keep the place of `outcome`'s count and give back the other; "neither" gives back both."""
        for kind in [k for k in self._held if k != outcome]:
            await _give_back(self.counter, self._held.pop(kind))


async def _give_back(counter: WindowCounter | None, key: str) -> None:
    if counter is None:
        return
    try:
        await counter.take_back(key)
    except CounterUnavailable:
        log.warning("the submission counter is unreachable; a place could not be given back (fail-open)")


async def admit(ctx: BrokerContext, counter: WindowCounter, client_address: str) -> Admission:
    """Take this submission's places in both counts; refuse it when either count is past its limit."""
    limits: tuple[tuple[Refusal, int], ...] = (
        ("accepted", ctx.settings.submit_rate),
        ("refused", ctx.settings.submit_refused_rate),
    )
    epoch = int(ctx.clock().timestamp())
    window = epoch // WINDOW_SECONDS
    admission = Admission(True, counter=counter)
    for kind, rate in limits:
        if rate == 0:
            continue
        digest = ctx.keys.vault.blind_index("submit-rate", f"{kind}|{window}|{client_address}")
        key = f"submit-rate:{digest.hex()[:40]}"
        try:
            count = await counter.hit(key, COUNTER_TTL_SECONDS)
        except CounterUnavailable:
            log.warning("the submission counter is unreachable; admitting without a limit (fail-open)")
            await admission.settle("neither")
            return Admission(True)
        admission._held[kind] = key
        if count > rate:
            await admission.settle("neither")
            return Admission(False, retry_after_seconds=max(1, WINDOW_SECONDS - epoch % WINDOW_SECONDS), limit=kind)
    return admission


async def admit_to(
    ctx: BrokerContext, counter: WindowCounter, client_address: str, *, kind: str, rate: int
) -> Admission:
    """Count one attempt by `client_address` at the limit named `kind` (its own counters); refuse past `rate`.

    The count is the counter store's atomic increment, so a burst of parallel requests admits at most `rate`."""
    if rate == 0:
        return Admission(True)
    epoch = int(ctx.clock().timestamp())
    window = epoch // WINDOW_SECONDS
    digest = ctx.keys.vault.blind_index(kind, f"{window}|{client_address}")
    try:
        count = await counter.hit(f"{kind}:{digest.hex()[:40]}", COUNTER_TTL_SECONDS)
    except CounterUnavailable:
        log.warning("the %s counter is unreachable; admitting without a limit (fail-open)", kind)
        return Admission(True)
    if count <= rate:
        return Admission(True)
    return Admission(False, retry_after_seconds=WINDOW_SECONDS - epoch % WINDOW_SECONDS)
