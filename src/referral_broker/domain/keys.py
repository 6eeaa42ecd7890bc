"""Clinic key kinds and the key state machine."""

from __future__ import annotations

from enum import StrEnum

from referral_protocol.errors import IllegalTransition


class KeyPurpose(StrEnum):
    ENCRYPTION = "encryption"  # X25519: referrals are sealed to it
    SIGNING = "signing"  # Ed25519: authenticates the clinic's API requests


class KeyState(StrEnum):
    PENDING = "pending"  # enrolled, fingerprint not yet verified out of band
    ACTIVE = "active"  # used: new referrals are sealed to it / requests signed by it accepted
    RETIRING = "retiring"  # no new referrals; still holds referrals not yet acknowledged
    RETIRED = "retired"  # nothing left sealed to it
    REVOKED = "revoked"  # withdrawn at once, whatever it still holds


_K = KeyState

KEY_TRANSITIONS: dict[KeyState, frozenset[KeyState]] = {
    _K.PENDING: frozenset({_K.ACTIVE, _K.REVOKED}),
    _K.ACTIVE: frozenset({_K.RETIRING, _K.REVOKED}),
    _K.RETIRING: frozenset({_K.RETIRED, _K.REVOKED}),
    _K.RETIRED: frozenset({_K.REVOKED}),
    _K.REVOKED: frozenset(),
}


def can_key_move(source: KeyState, target: KeyState) -> bool:
    return target in KEY_TRANSITIONS[source]


def check_key_move(source: KeyState, target: KeyState) -> None:
    if not can_key_move(source, target):
        raise IllegalTransition(f"a key cannot move from {source} to {target}")


def key_sources_of(target: KeyState) -> list[str]:
    """Every state that `can_key_move` to `target`: the WHERE clause of the store's conditional updates."""
    return sorted(s.value for s in KeyState if can_key_move(s, target))


class ClinicStatus(StrEnum):
    PENDING = "pending"  # enrolled, no key verified yet
    ACTIVE = "active"  # may be chosen by patients
    SUSPENDED = "suspended"  # an operator stopped it; not offered, requests refused
