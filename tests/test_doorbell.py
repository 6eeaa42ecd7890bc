"""The doorbell enqueues as arq's own `enqueue_job` does, in one round trip, against the run's real Redis."""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis
from arq.connections import create_pool
from arq.constants import default_queue_name, job_key_prefix, result_key_prefix
from arq.jobs import Job, JobStatus, deserialize_job

from referral_broker.adapters.arq_doorbell import WITHDRAWN_KEPT_MS, ArqDoorbell, redis_settings
from referral_broker.services.ports import JOB_DISPATCH, job_id


async def test_a_rung_job_is_stored_as_arq_stores_it_and_waits_in_its_queue(redis_url: str) -> None:
    subject = uuid.uuid4()
    doorbell = ArqDoorbell(redis_url)
    arq = await create_pool(redis_settings(redis_url))
    try:
        await doorbell.ring(JOB_DISPATCH, subject)
        identity = job_id(JOB_DISPATCH, subject)
        job = Job(identity, arq)
        assert await job.status() == JobStatus.queued  # arq's own client finds it where it looks
        definition = deserialize_job(await arq.get(job_key_prefix + identity))
        assert (definition.function, definition.args, definition.kwargs) == (JOB_DISPATCH, (str(subject),), {})
        assert definition.job_try is None
        ttl_ms = await arq.pttl(job_key_prefix + identity)
        assert 0 < ttl_ms <= arq.expires_extra_ms  # expires as arq's jobs do, a day after it was due
        score = await arq.zscore(default_queue_name, identity)  # due now: its enqueue time, in ms
        assert score == round(definition.enqueue_time.timestamp() * 1000)
    finally:
        await doorbell.close()
        await arq.aclose()


async def test_ringing_again_enqueues_nothing_while_the_job_or_its_result_is_there(redis_url: str) -> None:
    doorbell = ArqDoorbell(redis_url)
    client = aioredis.from_url(redis_url)
    first, second = uuid.uuid4(), uuid.uuid4()
    try:
        await doorbell.ring(JOB_DISPATCH, first)
        stored = await client.get(job_key_prefix + job_id(JOB_DISPATCH, first))
        await doorbell.ring(JOB_DISPATCH, first)
        assert await client.zcard(default_queue_name) == 1
        assert await client.get(job_key_prefix + job_id(JOB_DISPATCH, first)) == stored  # not overwritten

        await client.set(result_key_prefix + job_id(JOB_DISPATCH, second), b"kept result")
        await doorbell.ring(JOB_DISPATCH, second)
        assert await client.zcard(default_queue_name) == 1
        assert await client.exists(job_key_prefix + job_id(JOB_DISPATCH, second)) == 0
    finally:
        await doorbell.close()
        await client.aclose()


async def test_a_redis_that_forgot_the_script_is_sent_it_again(redis_url: str) -> None:
    """A restarted or flushed Redis has no scripts: the ring loads it again instead of failing."""
    doorbell = ArqDoorbell(redis_url)
    client = aioredis.from_url(redis_url)
    try:
        await doorbell.ring(JOB_DISPATCH, uuid.uuid4())
        await client.script_flush()
        await doorbell.ring(JOB_DISPATCH, uuid.uuid4())
        assert await client.zcard(default_queue_name) == 2
    finally:
        await doorbell.close()
        await client.aclose()


async def test_withdrawing_takes_the_named_waiting_jobs_out_of_the_queue_and_lets_their_data_lapse(
    redis_url: str,
) -> None:
    doorbell = ArqDoorbell(redis_url)
    client = aioredis.from_url(redis_url)
    done, waiting, unknown = [uuid.uuid4(), uuid.uuid4()], uuid.uuid4(), uuid.uuid4()
    try:
        for subject in [*done, waiting]:
            await doorbell.ring(JOB_DISPATCH, subject)
        await doorbell.withdraw(JOB_DISPATCH, [*done, unknown])
        await doorbell.withdraw(JOB_DISPATCH, [])  # nothing to send
        assert await client.zrange(default_queue_name, 0, -1) == [job_id(JOB_DISPATCH, waiting).encode()]
        for subject in done:  # a worker that read the queue entry just before still finds the job's data
            assert 0 < await client.pttl(job_key_prefix + job_id(JOB_DISPATCH, subject)) <= WITHDRAWN_KEPT_MS
        assert await client.pttl(job_key_prefix + job_id(JOB_DISPATCH, waiting)) > WITHDRAWN_KEPT_MS
        assert await client.exists(job_key_prefix + job_id(JOB_DISPATCH, unknown)) == 0  # nothing made
    finally:
        await doorbell.close()
        await client.aclose()
