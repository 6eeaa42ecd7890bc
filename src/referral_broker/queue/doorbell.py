"""The arq adapter behind the services' Doorbell port."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import default_queue_name

from referral_broker.services.ports import job_id

log = logging.getLogger(__name__)

#: A ring waits at most this long. A Redis that is paused or unreachable without closing its connections
#: would otherwise hold a patient's submission for as long; the outbox row is committed, so the
#: reconciler rings again later and nothing is lost by giving up.
RING_TIMEOUT_SECONDS = 2.0


def redis_settings(url: str) -> RedisSettings:
    settings: RedisSettings = RedisSettings.from_dsn(url)
    # Fail fast: a ring that cannot reach Redis is made up for by the reconciler, so never hang intake.
    settings.conn_timeout = 2
    settings.conn_retries = 0
    return settings


class ArqDoorbell:
    """Enqueues jobs with deterministic ids; connects lazily and reconnects after Redis comes back."""

    def __init__(self, url: str, redis: ArqRedis | None = None) -> None:
        self._url = url
        self._redis = redis
        self._lock = asyncio.Lock()

    async def _connection(self) -> ArqRedis:
        if self._redis is None:
            async with self._lock:
                if self._redis is None:
                    self._redis = await create_pool(redis_settings(self._url))
        return self._redis

    async def ring(self, job: str, subject_id: uuid.UUID) -> None:
        redis = await self._connection()
        await asyncio.wait_for(
            redis.enqueue_job(job, str(subject_id), _job_id=job_id(job, subject_id)), timeout=RING_TIMEOUT_SECONDS
        )

    async def ping(self) -> bool:
        try:
            redis = await self._connection()
            result: Any = await asyncio.wait_for(redis.ping(), timeout=2)
            return bool(result)
        except Exception:  # readiness only: any failure means "not ready"
            return False

    async def queue_depth(self) -> int | None:
        """Jobs waiting in arq's queue (for the dashboard and /metrics); None when Redis does not answer."""
        try:
            redis = await self._connection()
            result: Any = await asyncio.wait_for(redis.zcard(default_queue_name), timeout=2)
            return int(result)
        except Exception:  # a gauge only: "unknown" is shown, and /readyz reports Redis itself
            return None

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
