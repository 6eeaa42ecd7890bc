"""The Redis adapter of the submission limiter's counter port: INCR and EXPIRE in one round trip; a take-back
that decrements only a key that still exists (a plain DECR after expiry would make a -1 that never expires)."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import RedisError

from referral_broker.services.submit_limit import CounterUnavailable

#: Short timeouts: a Redis that hangs must not hold a patient's submission for long (the limiter fails open).
_TIMEOUT_SECONDS = 0.5
_TAKE_BACK = """
if redis.call('exists', KEYS[1]) == 1 and tonumber(redis.call('get', KEYS[1])) > 0 then
  return redis.call('decr', KEYS[1])
end
return 0
"""


class RedisWindowCounter:
    def __init__(self, url: str) -> None:
        self._redis: Redis = Redis.from_url(
            url, socket_connect_timeout=_TIMEOUT_SECONDS, socket_timeout=_TIMEOUT_SECONDS, retry_on_timeout=False
        )

    async def hit(self, key: str, ttl_seconds: int) -> int:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, ttl_seconds)
                count, _ = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise CounterUnavailable(type(exc).__name__) from exc
        return int(count)

    async def take_back(self, key: str) -> None:
        try:
            await self._redis.eval(_TAKE_BACK, 1, key)  # type: ignore[misc]
        except (RedisError, OSError) as exc:
            raise CounterUnavailable(type(exc).__name__) from exc

    async def close(self) -> None:
        await self._redis.aclose()
