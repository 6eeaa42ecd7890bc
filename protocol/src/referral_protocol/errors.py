"""Errors the domain speaks in; each carries what a person needs to act on it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldError:
    """One thing wrong with one field: a stable code for translation and an English message."""

    field: str
    code: str
    message: str


class DomainError(Exception):
    """A foreseeable refusal; its message is fit to show to the person who caused it."""


@dataclass
class InvalidRequest(DomainError):
    """The request is refused; `errors` names every field that is wrong and why."""

    errors: list[FieldError] = field(default_factory=list)

    def __str__(self) -> str:
        return "; ".join(f"{e.field}: {e.message}" for e in self.errors)


class MalformedRequest(InvalidRequest):
    """The request cannot be read at all (not JSON, not UTF-8, a NUL byte), so no field can be judged: 400."""


class IllegalTransition(DomainError):
    """A state machine was asked to move along an edge it does not have."""


class EnvelopeRejected(DomainError):
    """A sealed envelope failed a check: signature, addressee, format or decryption."""


class EnvelopeSignedByAnotherKey(EnvelopeRejected):
    """A well-formed envelope names a signer other than the pinned broker key: the pin may be out of date."""

    def __init__(self, message: str, signer: str = "") -> None:
        super().__init__(message)
        self.signer = signer  # the key id the envelope names (16 hex digits once decoded strictly)


class KeyFileError(DomainError):
    """A key file could not be read: wrong passphrase, wrong format, or damaged."""
