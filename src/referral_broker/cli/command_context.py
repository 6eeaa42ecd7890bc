"""Running one use case from the command line: open a BrokerContext, run it, close it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from referral_broker.services.context import BrokerContext
from referral_broker.services.ports import NoDoorbell
from referral_broker.services.settings import Settings

T = TypeVar("T")


async def open_command_context(settings: Settings | None = None) -> BrokerContext:
    return await BrokerContext.open(settings or Settings.from_env(), NoDoorbell(), pool_size=2)


def run_with_context(fn: Callable[[BrokerContext], Awaitable[T]]) -> T:
    async def run() -> T:
        ctx = await open_command_context()
        try:
            return await fn(ctx)
        finally:
            await ctx.close()

    return asyncio.run(run())
