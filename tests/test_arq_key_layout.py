"""arq's Redis key layout, which the doorbell's Lua scripts (adapters/arq_doorbell.py) write and read themselves
instead of going through arq. arq is pinned exactly in pyproject.toml; a new arq that moves a key, changes
a type, a score or an expiry fails here before the doorbell silently enqueues jobs no worker ever finds."""

from __future__ import annotations

import uuid
from typing import Any

import redis.asyncio as aioredis
from arq import constants
from arq.connections import create_pool
from arq.jobs import deserialize_job
from arq.worker import Worker, func

from referral_broker.adapters.arq_doorbell import redis_settings
from referral_broker.services.ports import JOB_DISPATCH, job_id

CHANGED = (
    "arq changed its Redis key layout, which the doorbell's Lua scripts in "
    "src/referral_broker/adapters/arq_doorbell.py write themselves: change them with it before taking this arq"
)


async def _keys(client: aioredis.Redis) -> dict[str, str]:
    return {key.decode(): (await client.type(key)).decode() for key in await client.keys("*")}


def test_the_key_names_the_doorbell_writes_are_arqs() -> None:
    layout = (
        constants.default_queue_name,
        constants.job_key_prefix,
        constants.result_key_prefix,
        constants.in_progress_key_prefix,
        constants.expires_extra_ms,
    )
    assert layout == ("arq:queue", "arq:job:", "arq:result:", "arq:in-progress:", 86_400_000), CHANGED


async def test_arq_enqueues_a_job_exactly_as_the_doorbell_does_and_leaves_only_its_result(redis_url: str) -> None:
    identity = job_id(JOB_DISPATCH, uuid.uuid4())
    ran: list[tuple[Any, ...]] = []

    async def dispatch_referral(ctx: dict[str, Any], subject: str) -> str:
        ran.append((subject,))
        return "done"

    arq = await create_pool(redis_settings(redis_url))
    client = aioredis.from_url(redis_url)
    try:
        job = await arq.enqueue_job(JOB_DISPATCH, "subject", _job_id=identity)
        assert job is not None
        # What the doorbell's _ENQUEUE_ONCE writes: the job as a string expiring a day after it is due,
        # and its id in the queue, scored with the time it is due in ms.
        assert await _keys(client) == {"arq:queue": "zset", f"arq:job:{identity}": "string"}, CHANGED
        definition = deserialize_job(await client.get(f"arq:job:{identity}"))
        assert (definition.function, definition.args, definition.kwargs) == (JOB_DISPATCH, ("subject",), {}), CHANGED
        due_ms = round(definition.enqueue_time.timestamp() * 1000)
        assert await client.zrange("arq:queue", 0, -1, withscores=True) == [(identity.encode(), due_ms)], CHANGED
        assert 86_400_000 - 60_000 < await client.pttl(f"arq:job:{identity}") <= 86_400_000, CHANGED
        # arq's own rule, which the script repeats: no second job while the first is there.
        assert await arq.enqueue_job(JOB_DISPATCH, "subject", _job_id=identity) is None, CHANGED

        worker = Worker(
            functions=[func(dispatch_referral, name=JOB_DISPATCH)],
            redis_pool=arq,
            burst=True,
            poll_delay=0.01,
            handle_signals=False,
            keep_result=3600,
        )
        try:
            await worker.main()
        finally:
            await worker.close()
        assert ran == [("subject",)]
        # Done, the job is gone from the queue and leaves only its result, which the script checks
        # (with the job key) before enqueueing again; and the result alone keeps arq from a second job.
        assert await _keys(client) == {f"arq:result:{identity}": "string"}, CHANGED
        assert await arq.enqueue_job(JOB_DISPATCH, "subject", _job_id=identity) is None, CHANGED
    finally:
        await client.aclose()
        await arq.aclose()
