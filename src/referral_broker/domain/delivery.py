"""The delivery state machine: the one place that says which moves a delivery may make."""

from __future__ import annotations

from enum import StrEnum

from referral_protocol.errors import IllegalTransition


class DeliveryStatus(StrEnum):
    QUEUED = "queued"  # accepted, sealed, waiting to be made available
    AVAILABLE = "available"  # in the clinic's inbox
    ACKNOWLEDGED = "acknowledged"  # the clinic wrote it durably and said so; ciphertext dropped
    FAILED = "failed"  # dispatch failed; will be retried
    DEAD = "dead"  # gave up after the allowed tries; shown to operators
    CANCELLED = "cancelled"  # withdrawn or erased before the clinic picked it up
    EXPIRED = "expired"  # anonymised before the clinic picked it up
    UNDELIVERABLE = "undeliverable"  # no key the clinic holds can open it (revoked, or the clinic refused it)


_S = DeliveryStatus

TRANSITIONS: dict[DeliveryStatus, frozenset[DeliveryStatus]] = {
    _S.QUEUED: frozenset({_S.AVAILABLE, _S.FAILED, _S.DEAD, _S.CANCELLED, _S.EXPIRED, _S.UNDELIVERABLE}),
    _S.FAILED: frozenset({_S.AVAILABLE, _S.FAILED, _S.DEAD, _S.CANCELLED, _S.EXPIRED, _S.UNDELIVERABLE}),
    _S.DEAD: frozenset({_S.QUEUED, _S.CANCELLED, _S.EXPIRED, _S.UNDELIVERABLE}),
    _S.AVAILABLE: frozenset({_S.ACKNOWLEDGED, _S.CANCELLED, _S.EXPIRED, _S.UNDELIVERABLE}),
    _S.ACKNOWLEDGED: frozenset(),
    _S.CANCELLED: frozenset(),
    _S.EXPIRED: frozenset(),
    _S.UNDELIVERABLE: frozenset(),  # the patient is asked to submit again; the ciphertext is dropped
}

#: States in which the broker still holds ciphertext for the clinic.
HOLDS_CIPHERTEXT: frozenset[DeliveryStatus] = frozenset({_S.QUEUED, _S.FAILED, _S.DEAD, _S.AVAILABLE})


def can_move(source: DeliveryStatus, target: DeliveryStatus) -> bool:
    return target in TRANSITIONS[source]


def check_move(source: DeliveryStatus, target: DeliveryStatus) -> None:
    if not can_move(source, target):
        raise IllegalTransition(f"a delivery cannot move from {source} to {target}")


def sources_of(target: DeliveryStatus) -> list[str]:
    """Every state that `can_move` to `target`: the WHERE clause of the store's conditional updates, which
    move many rows at once and so check the move in SQL, leaving a row in any other state as it is."""
    return sorted(s.value for s in DeliveryStatus if can_move(s, target))
