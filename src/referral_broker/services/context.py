"""What every use case needs at hand, built once per process by the web app, the worker and the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from referral_broker.crypto.broker_keys import BrokerKeys, load_keys
from referral_broker.services.ports import Clock, Doorbell, system_clock
from referral_broker.services.sealing_targets import SealingTargets
from referral_broker.services.settings import Settings
from referral_broker.store.pool import create_pool


@dataclass
class BrokerContext:
    settings: Settings
    pool: asyncpg.Pool
    keys: BrokerKeys
    doorbell: Doorbell
    clock: Clock = system_clock
    sealing_targets: SealingTargets = field(default_factory=SealingTargets)

    @classmethod
    async def open(
        cls, settings: Settings, doorbell: Doorbell, *, clock: Clock = system_clock, pool_size: int = 10
    ) -> BrokerContext:
        keys = load_keys(settings.keys_dir)  # fail before opening connections if keys are missing
        pool = await create_pool(settings.database_url, max_size=pool_size)
        return cls(settings=settings, pool=pool, keys=keys, doorbell=doorbell, clock=clock)

    async def close(self) -> None:
        await self.pool.close()
