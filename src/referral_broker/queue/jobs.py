"""Job functions: each takes ids only (arq pickles and may log its arguments), calls one service, and
turns a transient failure into an arq Retry with back-off. None swallows an error."""

from __future__ import annotations

import logging
import random
import uuid
from typing import Any

from arq import Retry

from referral_broker.services import data_key_rotation, dispatch, reconcile, retention
from referral_broker.services.context import BrokerContext

log = logging.getLogger(__name__)


def backoff_seconds(attempt: int) -> float:
    """Exponential back-off with jitter, capped at five minutes."""
    base: float = min(300.0, 2.0 ** max(attempt, 1))
    return base / 2 + random.uniform(0, base / 2)  # noqa: S311 - jitter, not a secret


async def dispatch_referral(ctx: dict[str, Any], referral_id: str) -> str:
    """Idempotent: see services.dispatch. Safe to run twice, concurrently, or after a crash."""
    broker: BrokerContext = ctx["broker"]
    try:
        outcome = await dispatch.dispatch_referral(broker, uuid.UUID(referral_id))
    except dispatch.TransientDispatchFailure as exc:
        delay = backoff_seconds(ctx.get("job_try", 1))
        log.warning("dispatch of referral %s failed (%s); retrying in %.1f s", referral_id, exc, delay)
        raise Retry(defer=delay) from exc
    return outcome.value


async def reconcile_outbox(ctx: dict[str, Any]) -> int:
    """The periodic run: rows just made were rung by whoever made them, so they get a grace period."""
    broker: BrokerContext = ctx["broker"]
    return await reconcile.reconcile(broker, grace=reconcile.GRACE)


async def anonymise_expired(ctx: dict[str, Any]) -> int:
    """Hourly: idempotent and resumable (see services.retention); a crash mid-run loses nothing."""
    broker: BrokerContext = ctx["broker"]
    run = await retention.anonymise_expired(broker)
    return run.anonymised


async def reencrypt_data(ctx: dict[str, Any]) -> int:
    """Hourly: re-encrypt what is not yet under the current data key, for half the job timeout; the next
    run resumes (see services.data_key_rotation). Nothing to do costs three counts."""
    broker: BrokerContext = ctx["broker"]
    run = await data_key_rotation.reencrypt(broker, budget_seconds=broker.settings.job_timeout / 2, actor="worker")
    if run.rewritten or run.left:
        log.info("data key %s: %d value(s) re-encrypted, %d left", run.current_key_id, run.rewritten, run.left)
    return run.rewritten
