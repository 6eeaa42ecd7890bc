"""How many referrals one client may submit per minute, through the form and the JSON API together.

A fixed one-minute window per client: the counter's key is an HMAC of the client's address and the
minute (keyed from the broker's data secret), so the counter store never holds an IP address, and
it expires two minutes later. `REFERRAL_BROKER_SUBMIT_RATE=0` turns the limit off.

Fail-open: when the counter store (Redis) cannot be reached, submissions are admitted and a warning
is logged. Redis is a doorbell that may go away; a referral is health care someone is waiting for,
and the other guards (CSRF, the honeypot, the body cap, validation) hold without Redis.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from referral_broker.services.context import BrokerContext

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60
#: The counter outlives its window a little, so a clock skew between servers cannot reset it early.
COUNTER_TTL_SECONDS = 2 * WINDOW_SECONDS


class CounterUnavailable(Exception):
    """The counter store did not answer in time."""


@runtime_checkable
class WindowCounter(Protocol):
    """A port: count one hit under `key`, which disappears `ttl_seconds` after its first hit."""

    async def hit(self, key: str, ttl_seconds: int) -> int: ...


@dataclass(frozen=True)
class Admission:
    admitted: bool
    retry_after_seconds: int = 0


async def admit(ctx: BrokerContext, counter: WindowCounter, client_address: str) -> Admission:
    """Count one submission attempt by `client_address`; refuse the one past the configured rate."""
    return await admit_to(ctx, counter, client_address, kind="submit-rate", rate=ctx.settings.submit_rate)


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
