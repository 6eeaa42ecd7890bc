"""SIGKILL at the two moments the other kill tests do not reach, with the real programs.

- The worker killed *after* the dispatch effect committed but before arq recorded the job as done:
  arq runs the job again once its in-progress mark lapses, and the re-run changes nothing (one audit
  event, one receipt, one attempt). (Killed *before* the effect: tests/e2e/test_pipeline_processes.py::
  test_worker_killed_mid_job_still_dispatches_exactly_once.)
- `referral-clinic pull` killed after writing its files and before its acknowledgement reached the
  broker: the next pull writes no duplicate and acknowledges them; the same acknowledgement sent again
  changes nothing, and the very same signed request replayed is refused.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import asyncpg
import httpx
import msgspec
import pytest
import redis

from devstack import RedisServer
from devstack.stack import Stack
from referral_clinic.keystore import ClinicDir
from referral_protocol.encoding import key_id
from referral_protocol.request_signature import sign_request
from tests.e2e.test_pipeline_processes import PASSPHRASE
from tests.faults.stack import (
    DELIVERED_ONCE,
    ClinicHold,
    as_e2e_broker,
    assert_each_effect_once,
    each_effect_once,
    referral_bodies,
    submit_all,
    wait_for_backend_waiting,
)
from tests.ops.notice_sinks import WebhookReceiver, webhook  # noqa: F401 - the fixture
from tests.processes import Program, program, run, wait_for_value

pytestmark = pytest.mark.e2e


async def _wait_for_text(program_: Program, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in program_.output():
        assert time.monotonic() < deadline, f"{text!r} never appeared:\n{program_.output()[-3000:]}"
        await asyncio.sleep(0.1)


async def test_worker_killed_after_the_dispatch_effect_reruns_the_job_to_no_effect(
    stack: Stack,
    own_redis: RedisServer,
    webhook: WebhookReceiver,  # noqa: F811
) -> None:
    stack.env["REFERRAL_BROKER_JOB_TIMEOUT"] = "3"  # the in-progress mark lapses after 13 s
    stack.serve()
    as_e2e_broker(stack).clinic("klinikk-a")
    # With a contact, the job's last step after its commit is a ring (the clinic's notice), which waits on
    # the paused Redis (up to the ring timeout) *before* arq writes that the job is done. Without one, the
    # job could write its "done" to Redis' socket before the kill, and Redis would act on it once resumed.
    run([program("referral-broker"), "clinic", "set-contact", "klinikk-a", "--webhook", webhook.url], stack.env)
    worker = stack.worker()
    await wait_for_value(stack.database_url, "SELECT count(*) FROM worker_heartbeats", 1)
    hold = await ClinicHold.install(stack.database_url)
    try:
        await hold.hold("klinikk-a")
        await submit_all(stack.url, referral_bodies(["klinikk-a"], 1, "killed after"))
        await wait_for_backend_waiting(stack.database_url, "%INSERT INTO dispatch_receipts%", 1)
        assert own_redis.pid is not None
        os.kill(own_redis.pid, signal.SIGSTOP)  # the worker will hang on Redis right after committing
        try:
            await hold.release("klinikk-a")
            await wait_for_value(stack.database_url, DELIVERED_ONCE, 1)  # the effect is committed …
            await asyncio.sleep(0.5)
            worker.kill()  # … and the worker dies before arq hears the job finished
        finally:
            os.kill(own_redis.pid, signal.SIGCONT)
    finally:
        await hold.close()

    client = redis.Redis.from_url(stack.redis_url)
    [job] = [j.decode() for j in client.zrange("arq:queue", 0, -1) if j.startswith(b"dispatch_referral:")]
    assert client.exists(f"arq:in-progress:{job}")  # arq still thinks it is running
    second = stack.worker("worker-2")
    await _wait_for_text(second, f"→ {job}", timeout=60)  # re-run once the mark lapsed
    deadline = time.monotonic() + 30
    while client.zcard("arq:queue"):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert_each_effect_once(await each_effect_once(stack.database_url), 1, 1)
    attempts = await _fetchval(stack.database_url, "SELECT attempts FROM outbox WHERE job = 'dispatch_referral'")
    assert attempts == 1  # the re-run found the outbox row done and did not even count an attempt


async def _fetchval(database_url: str, sql: str) -> object:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def test_clinic_tool_killed_between_writing_and_acknowledging_writes_no_duplicate(stack: Stack) -> None:
    stack.serve()
    e2e = as_e2e_broker(stack)
    folder = e2e.clinic("klinikk-a")
    stack.worker()
    references = sorted(
        r.json()["reference"]  # type: ignore[attr-defined]
        for r in await submit_all(stack.url, referral_bodies(["klinikk-a"], 2, "kill the clinic"))
    )
    await wait_for_value(stack.database_url, DELIVERED_ONCE, 2)
    out = stack.folder / "clinic-out"

    # The inbox request passes; the acknowledgement is held at the broker before it does anything.
    conn = await asyncpg.connect(stack.database_url)
    await conn.execute(
        """CREATE OR REPLACE FUNCTION fault_hold_ack() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
             IF EXISTS (SELECT 1 FROM clinic_request_nonces) THEN PERFORM pg_advisory_xact_lock(4242001); END IF;
             RETURN NEW;
           END $$;
           CREATE OR REPLACE TRIGGER fault_hold_ack BEFORE INSERT ON clinic_request_nonces
           FOR EACH ROW EXECUTE FUNCTION fault_hold_ack();
           SELECT pg_advisory_lock(4242001);"""
    )
    try:
        pull = Program(
            [program("referral-clinic"), "pull", "--dir", str(folder), "--out", str(out)],
            stack.env,
            stack.folder / "killed-pull.log",
        ).start()
        stack.programs.append(pull)
        await wait_for_backend_waiting(stack.database_url, "%INSERT INTO clinic_request_nonces%", 1)
        written = {p.name: p.read_bytes() for p in out.glob("*.json")}
        assert sorted(written) == [f"{r}.json" for r in references]  # on disk before the acknowledgement
        pull.kill()
        # The broker never applies that acknowledgement: its request dies with the connection.
        await conn.execute(
            """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
               WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO clinic_request_nonces%'"""
        )
    finally:
        await conn.execute("DROP TRIGGER fault_hold_ack ON clinic_request_nonces; DROP FUNCTION fault_hold_ack()")
        await conn.close()
    available = "SELECT count(*) FROM deliveries WHERE status = 'available'"
    assert await _fetchval(stack.database_url, available) == 2

    code, output = e2e.pull(folder, out)
    assert code == 0 and "pulled 2, written 0, acknowledged 2, already had 2" in output, output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == written  # no duplicate, no rewrite, no temp file
    acknowledged = "SELECT count(*) FROM deliveries WHERE status = 'acknowledged' AND envelope IS NULL"
    assert await _fetchval(stack.database_url, acknowledged) == 2
    state = "SELECT string_agg(acknowledged_at::text, ',' ORDER BY id) FROM deliveries"
    before = await _fetchval(stack.database_url, state)
    events = "SELECT count(*) FROM audit_events WHERE action = 'delivery.acknowledged'"
    assert await _fetchval(stack.database_url, events) == 1

    # The same acknowledgement again (as after a lost answer), then the very same signed request replayed.
    clinic_dir = ClinicDir(folder)
    secrets_ = clinic_dir.unlock(PASSPHRASE, clinic_dir.load_config())
    ids = [str(i) for i in await _delivery_ids(stack.database_url)]
    body = msgspec.json.encode({"delivery_ids": ids})
    url = f"{stack.url}/api/v1/clinic/inbox/ack"
    headers = sign_request(
        "POST",
        url,
        {"content-type": "application/json"},
        body,
        key_id=key_id(secrets_.signing_public),
        seed=secrets_.signing_seed,
    )
    async with httpx.AsyncClient(timeout=10) as client:
        again = await client.post(url, content=body, headers=headers)
        assert again.status_code == 200 and again.json() == {"acknowledged": ids, "unknown": []}, again.text
        replayed = await client.post(url, content=body, headers=headers)
        assert replayed.status_code == 401, replayed.text
    assert await _fetchval(stack.database_url, state) == before
    assert await _fetchval(stack.database_url, events) == 1
    code, output = e2e.pull(folder, out)
    assert code == 0 and "pulled 0" in output, output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == written


async def _delivery_ids(database_url: str) -> list[object]:
    conn = await asyncpg.connect(database_url)
    try:
        return [r["id"] for r in await conn.fetch("SELECT id FROM deliveries ORDER BY id")]
    finally:
        await conn.close()
