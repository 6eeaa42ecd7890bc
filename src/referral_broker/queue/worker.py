"""arq worker settings, and a supervisor that restarts the worker when Redis goes away and returns."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import asyncpg
from arq import cron, func
from arq.worker import Worker
from redis.exceptions import RedisError

from referral_broker.adapters.arq_doorbell import ArqDoorbell, redis_settings
from referral_broker.queue import jobs, notification_jobs
from referral_broker.services import reconcile
from referral_broker.services.context import BrokerContext
from referral_broker.services.ports import JOB_DISPATCH, JOB_NOTIFY
from referral_broker.services.settings import Settings

log = logging.getLogger(__name__)

RECONCILE_EVERY_SECONDS = 15
#: PostgreSQL away or still starting when a worker starts (its jobs handle it themselves once running).
DATABASE_AWAY = (asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError)
HEARTBEAT_EVERY_SECONDS = 15


def worker_options(settings: Settings) -> dict[str, Any]:
    async def on_startup(ctx: dict[str, Any]) -> None:
        doorbell = ArqDoorbell(settings.redis_url, redis=ctx["redis"])
        ctx["broker"] = await BrokerContext.open(settings, doorbell, pool_size=5)
        # Make up at once for whatever Redis lost while no worker was running.
        rung = await reconcile.reconcile(ctx["broker"])  # everything due, without the periodic run's grace
        log.info("worker started; reconciler rang %d due jobs", rung)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        broker: BrokerContext | None = ctx.get("broker")
        if broker is not None:
            await broker.close()

    return {
        "functions": [
            # attempts are counted in the outbox, which turns deliveries dead after the configured number;
            # arq's own limit is only a backstop.
            func(jobs.dispatch_referral, name=JOB_DISPATCH, max_tries=1000, keep_result=0),
            # attempts counted in the outbox too; the notice is marked failed after the configured number
            func(notification_jobs.notify_clinic, name=JOB_NOTIFY, max_tries=1000, keep_result=0),
        ],
        "cron_jobs": [
            cron(
                jobs.anonymise_expired,
                name="anonymise_expired",
                minute={17},
                second={0},
                run_at_startup=False,
                keep_result=0,
                unique=True,
                # No timeout of its own: arq derives one in-progress lapse for ALL jobs from the largest
                # function timeout, which would delay re-running a killed dispatch by as long. A sweep cut
                # short by the ordinary timeout has committed whole batches; the next hour resumes it.
            ),
            cron(
                jobs.reencrypt_data,
                name="reencrypt_data",
                minute={47},
                second={0},
                run_at_startup=False,
                keep_result=0,
                unique=True,
            ),
            cron(
                jobs.reconcile_outbox,
                name="reconcile_outbox",
                second=set(range(0, 60, RECONCILE_EVERY_SECONDS)),
                run_at_startup=False,
                keep_result=0,
                unique=True,
            ),
            cron(
                notification_jobs.heartbeat,
                name="heartbeat",
                second=set(range(5, 60, HEARTBEAT_EVERY_SECONDS)),
                run_at_startup=True,
                keep_result=0,
                unique=True,
            ),
            cron(
                notification_jobs.remind_clinics,
                name="remind_clinics",
                second={30},
                run_at_startup=False,
                keep_result=0,
                unique=True,
            ),
        ],
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "redis_settings": redis_settings(settings.redis_url),
        "poll_delay": settings.worker_poll_delay,
        "keep_result": 0,
        # A job killed with its worker is re-run once arq's in-progress mark lapses (job_timeout + 10 s).
        "job_timeout": settings.job_timeout,
        "max_jobs": 20,
        "log_results": False,
        "handle_signals": True,
    }


def run_supervised(settings: Settings, *, max_backoff: float = 10.0) -> None:
    """Run the worker; when it stops because Redis (or, at its start, PostgreSQL) went away, start it again.

    A signal (SIGINT/SIGTERM) makes arq finish or return its jobs and `run()` return: then we stop.
    """
    delay = 0.5
    while True:
        started = time.monotonic()
        worker: Worker | None = None
        try:
            worker = Worker(**worker_options(settings))
            worker.run()
            return
        except asyncio.CancelledError:
            # arq's SIGTERM/SIGINT handling cancels running jobs (they stay queued and run again) and
            # then lets the cancellation escape run(); that is a clean stop, not a failure.
            log.info("worker stopped by signal; unfinished jobs stay queued for the next worker")
            return
        except (TimeoutError, RedisError, OSError, *DATABASE_AWAY) as exc:
            if time.monotonic() - started > 60:
                delay = 0.5
            log.warning("worker lost Redis or PostgreSQL (%s); restarting in %.1f s", type(exc).__name__, delay)
            _let_go(worker)
            time.sleep(delay)
            delay = min(max_backoff, delay * 2)
            asyncio.set_event_loop(asyncio.new_event_loop())


LET_GO_SECONDS = 5.0


def _let_go(worker: Worker | None) -> None:
    """End what a worker that lost Redis left on its event loop, then close the loop.

    When Redis goes away, arq's `run()` gives up while closing and leaves its job tasks on the loop. A
    job blocked inside a dispatch transaction would then hold that transaction, and its row locks, open
    on a loop nobody runs again, and every later run of the same referral would wait on those locks.
    So: cancel the tasks (a cancelled job is rolled back and, being idempotent, run again later), then
    terminate the database connections (ending any transaction still open), and close the loop.
    """
    if worker is None or worker.loop.is_closed():
        return
    loop = worker.loop
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        done, _ = loop.run_until_complete(asyncio.wait(pending, timeout=LET_GO_SECONDS))
        for task in done:  # retrieve what they raised (Redis is away), so nothing is reported unretrieved
            if not task.cancelled():
                task.exception()
    broker: BrokerContext | None = worker.ctx.get("broker")
    if broker is not None:
        broker.pool.terminate()
    redis = worker.ctx.get("redis")
    if redis is not None:
        with contextlib.suppress(Exception):  # the connections are dead already; only let go of them
            loop.run_until_complete(asyncio.wait_for(redis.aclose(close_connection_pool=True), LET_GO_SECONDS))
    loop.close()
