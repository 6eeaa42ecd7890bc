"""Jobs of operating the broker: sending a clinic notice, planning reminders, the worker's heartbeat and
tidying old sign-in records. Like every job: ids only, one service call, transient failures retried
with back-off, nothing swallowed."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import Any

from arq import Retry

from referral_broker.adapters.configured import ConfiguredNoticeSender
from referral_broker.queue.jobs import backoff_seconds
from referral_broker.services import monitoring, notifications, operators
from referral_broker.services.context import BrokerContext

log = logging.getLogger(__name__)


async def notify_clinic(ctx: dict[str, Any], notice_id: str) -> str:
    """Idempotent: a channel that went out is recorded at once and not used again by a retry."""
    broker: BrokerContext = ctx["broker"]
    try:
        sender = ConfiguredNoticeSender(broker.settings, broker.keys.signer)
        outcome = await notifications.send_notice(broker, uuid.UUID(notice_id), sender)
    except notifications.TransientNotifyFailure as exc:
        delay = backoff_seconds(ctx.get("job_try", 1))
        log.warning("notice %s failed (%s); retrying in %.1f s", notice_id, exc, delay)
        raise Retry(defer=delay) from exc
    return outcome.value


async def remind_clinics(ctx: dict[str, Any]) -> int:
    broker: BrokerContext = ctx["broker"]
    return await notifications.remind_overdue_clinics(broker)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def heartbeat(ctx: dict[str, Any]) -> None:
    """Runs through the queue like any job, so its beat shows that jobs are actually being run."""
    broker: BrokerContext = ctx["broker"]
    await monitoring.record_heartbeat(broker, worker_name())
    await operators.forget_old_sign_ins(broker)
