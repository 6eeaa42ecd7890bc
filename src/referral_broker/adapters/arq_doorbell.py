"""The arq adapter of the services' Doorbell port (its Lua scripts rely on arq's Redis key layout)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import default_queue_name, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms
from redis.commands.core import AsyncScript

from referral_broker.services.ports import job_id

log = logging.getLogger(__name__)

#: A ring waits at most this long. A Redis that is paused or unreachable without closing its connections
#: would otherwise hold a patient's submission for as long; the outbox row is committed, so the
#: reconciler rings again later and nothing is lost by giving up.
RING_TIMEOUT_SECONDS = 2.0

#: arq's `enqueue_job` in one round trip instead of three (WATCH, EXISTS, then MULTI/PSETEX/ZADD/EXEC),
#: with the same effect: nothing when the job or its result is already there (so a repeated ring is a
#: no-op, as with arq), else the job, stored as arq stores it, and its place in arq's queue. A script
#: runs atomically, so no other client comes between the check and the write.
_ENQUEUE_ONCE = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('PSETEX', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
return 1
"""

#: Jobs whose work another run did (a dispatch takes along referrals waiting beside its own), taken out
#: of arq's queue in one round trip, so no worker spends its Redis round trips and a database query on
#: each to find nothing to do. KEYS[1] is the queue and ARGV[1] how long a withdrawn job's data is kept;
#: from 2 on, KEYS[i] is the job whose id is ARGV[i]. The data is not deleted at once: a worker that read
#: the queue entry just before may be about to read it, and would otherwise count the job as lost ("job
#: expired"); kept a minute, it runs and finds its work done. A job running already has read its data;
#: arq takes its queue entry away when it ends, or puts it back for a retry.
_WITHDRAW = """
local n = 0
for i = 2, #KEYS do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
    n = n + 1
  end
end
return n
"""
WITHDRAWN_KEPT_MS = 60_000


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
        self._enqueue: AsyncScript | None = None
        self._withdraw: AsyncScript | None = None
        if redis is not None:
            self._register(redis)
        self._lock = asyncio.Lock()

    async def _connection(self) -> ArqRedis:
        if self._redis is None:
            async with self._lock:
                if self._redis is None:
                    self._redis = await create_pool(redis_settings(self._url))
                    self._register(self._redis)
        return self._redis

    def _register(self, redis: ArqRedis) -> None:
        self._enqueue = redis.register_script(_ENQUEUE_ONCE)
        self._withdraw = redis.register_script(_WITHDRAW)

    async def ring(self, job: str, subject_id: uuid.UUID) -> None:
        """Enqueue `job(subject_id)` under its deterministic id, unless it (or its result) is there."""
        redis = await self._connection()
        assert self._enqueue is not None  # noqa: S101 - registered with the connection
        identity = job_id(job, subject_id)
        now = timestamp_ms()
        data = serialize_job(job, (str(subject_id),), {}, None, now, serializer=redis.job_serializer)
        keys = [job_key_prefix + identity, result_key_prefix + identity, default_queue_name]
        async with asyncio.timeout(RING_TIMEOUT_SECONDS):  # in this task: wait_for would make one more a ring
            await self._enqueue(keys=keys, args=[redis.expires_extra_ms, data, now, identity], client=redis)

    async def withdraw(self, job: str, subject_ids: list[uuid.UUID]) -> None:
        """Take the waiting jobs of work already done out of arq's queue (see `_WITHDRAW`)."""
        if not subject_ids:
            return
        redis = await self._connection()
        assert self._withdraw is not None  # noqa: S101 - registered with the connection
        identities = [job_id(job, s) for s in subject_ids]
        keys = [default_queue_name, *(job_key_prefix + i for i in identities)]
        async with asyncio.timeout(RING_TIMEOUT_SECONDS):
            await self._withdraw(keys=keys, args=[WITHDRAWN_KEPT_MS, *identities], client=redis)

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
