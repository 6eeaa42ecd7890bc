"""`DIR/desk-states.json`: which referrals the clinic's staff have read or handled.

A small file beside the ledger, replaced whole and durably at each change (temp file, fsync, rename,
fsync of the folder), and holding only references and states: no personal data. It is the staff's
work list, not a record of what the broker delivered, so it is kept out of the append-only ledger and
out of OUTDIR (which journal systems import from); docs/decisions/0018-desk-states-and-deletion.md.
Withdrawn and erased are not kept here: they follow from the notices beside the referral.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import msgspec

from referral_clinic import durable
from referral_clinic.referral_view import LocalReferral
from referral_protocol.validation import DECODE_ERRORS

STATES_FILE = "desk-states.json"
STATES_FORMAT = "referral-clinic/desk-states/v1"


class State(StrEnum):
    NEW = "new"
    READ = "read"
    HANDLED = "handled"
    WITHDRAWN = "withdrawn"
    ERASED = "erased"


MARKABLE = (State.NEW, State.READ, State.HANDLED)  # what staff may set; the others come from notices


class Marked(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    state: str
    at: datetime


class StatesDocument(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    format: str
    marked: dict[str, Marked]


class StatesDamaged(Exception):
    """The states file cannot be read; the message says which and what to do."""


class DeskStates:
    """The marks, read once and kept in memory; each change is on disk before `mark` returns."""

    def __init__(self, clinic_dir: Path) -> None:
        self.path = clinic_dir / STATES_FILE
        self._lock = threading.Lock()
        self._marked = self._read()

    def _read(self) -> dict[str, Marked]:
        try:
            document = msgspec.json.decode(self.path.read_bytes(), type=StatesDocument)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise StatesDamaged(f"cannot read {self.path}: {exc.strerror}") from None
        except DECODE_ERRORS:
            raise StatesDamaged(
                f"{self.path} is damaged; move it aside and the desk starts with every referral marked new"
            ) from None
        if document.format != STATES_FORMAT:
            raise StatesDamaged(f"{self.path} has unknown format {document.format!r}")
        return dict(document.marked)

    def state_of(self, referral: LocalReferral) -> State:
        if referral.erasure is not None:
            return State.ERASED
        if referral.withdrawal is not None:
            return State.WITHDRAWN
        marked = self._marked.get(referral.reference)
        return State(marked.state) if marked is not None else State.NEW

    def mark(self, reference: str, state: State) -> None:
        """Record `state` for `reference` durably; OSError (a full disk, say) leaves the old marks in force."""
        if state not in MARKABLE:
            raise ValueError(f"{state} follows from the notices and cannot be set")
        with self._lock:
            changed = dict(self._marked)
            if state == State.NEW:
                changed.pop(reference, None)
            else:
                changed[reference] = Marked(state=state.value, at=datetime.now(UTC))
            self._write(changed)

    def forget(self, reference: str) -> None:
        """A deleted referral leaves no mark behind."""
        with self._lock:
            if reference in self._marked:
                changed = dict(self._marked)
                del changed[reference]
                self._write(changed)

    def _write(self, changed: dict[str, Marked]) -> None:
        document = StatesDocument(format=STATES_FORMAT, marked=changed)
        durable.write_new_file(self.path, msgspec.json.encode(document) + b"\n")
        self._marked = changed
