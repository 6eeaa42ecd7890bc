"""The narrow interfaces services use to reach what they must not know the details of."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

#: The one job name per kind of work; the outbox, the doorbell and the worker all use these.
JOB_DISPATCH = "dispatch_referral"
JOB_NOTIFY = "notify_clinic"

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def job_id(job: str, subject_id: uuid.UUID) -> str:
    """Deterministic: enqueueing the same work twice while it waits or runs is a no-op in arq."""
    return f"{job}:{subject_id}"


class Doorbell(Protocol):
    """Tells the workers that work is due. It may lose rings; the outbox and reconciler make up for it."""

    async def ring(self, job: str, subject_id: uuid.UUID) -> None: ...

    async def withdraw(self, job: str, subject_ids: list[uuid.UUID]) -> None:
        """Their work was done by another run: jobs still waiting for it need not run.

        Only ever saves work. A job already picked up runs and finds nothing to do, as it would have."""


class NoDoorbell:
    """For one-shot commands (enrolment, retention) that change no delivery: ringing is a bug."""

    async def ring(self, job: str, subject_id: uuid.UUID) -> None:  # pragma: no cover - never rung
        raise RuntimeError(f"a command that enqueues nothing tried to enqueue {job}")

    async def withdraw(self, job: str, subject_ids: list[uuid.UUID]) -> None:  # pragma: no cover - never rung
        raise RuntimeError(f"a command that enqueues nothing tried to withdraw {job}")


class CodeSender(Protocol):
    """Sends a patient's one-time code to the e-mail address or phone number they typed.

    `channel` is "email" or "phone"; `destination` is the normalised address. Raises
    `CodeNotSent` when the code did not go out; the caller then keeps nothing of the request.
    """

    async def send(self, channel: str, destination: str, code: str, minutes: int) -> None: ...


class CodeNotSent(Exception):
    """The code could not be sent this time; `reason` is short and names no one."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@runtime_checkable
class ReplySender(Protocol):
    """Sends an operator's answer to a customer-service message by e-mail to the address its sender gave.

    Raises `ReplyNotSent` when the message did not go out; the caller then records no answer."""

    async def send_reply(self, recipient: str, subject: str, text: str) -> None: ...


class ReplyNotSent(Exception):
    """The answer could not be sent this time; `reason` is short and names no one."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
