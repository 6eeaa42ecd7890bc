"""`DIR/ledger.jsonl`: the clinic's own record of what it wrote and acknowledged, so a pull is idempotent.

Append-only JSON lines, each fsync'd before the step it records is taken to have happened:
"writing" (about to write a referral file), "written" (it is on disk), "acknowledged" (the broker
confirmed). "writing" lets a pull interrupted between the rename and the "written" line recognise
the file it finds as its own instead of refusing it forever.

A notice (correction, erasure, withdrawal) is recorded the same way under its own id, with `notice`
naming its kind and `reference` the referral it concerns; it never takes the referral's place in the
reference → delivery map, so a notice and its referral do not collide.

"deleted" records that the clinic deleted a written file from this computer (the desk's delete). The
delivery stays known as written and acknowledged, so a delivery served again is never written again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import msgspec

from referral_clinic import durable
from referral_protocol.validation import DECODE_ERRORS

Event = Literal["writing", "written", "acknowledged", "deleted"]


class LedgerDamaged(Exception):
    """The ledger cannot be read, or a line of it other than a last one torn by a crash."""


class LedgerEntry(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    event: Event
    delivery_id: str
    at: datetime
    reference: str | None = None
    file: str | None = None
    notice: str | None = None  # the notice's kind; None for a referral


@dataclass(frozen=True)
class FileRecord:
    """What the ledger records of one file: the delivery (or notice) it holds, its referral, where it is."""

    delivery_id: str
    reference: str
    file: Path
    notice: str | None = None  # the notice's kind; None for a referral


_decoder = msgspec.json.Decoder(LedgerEntry)
_encoder = msgspec.json.Encoder()


class Ledger:
    """The ledger's state, read once at the start of a pull and kept current as lines are appended."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writing: dict[str, str] = {}  # delivery id -> file being written
        self._written: dict[str, str] = {}  # delivery id -> reference
        self._by_reference: dict[str, str] = {}  # reference -> delivery id
        self._acknowledged: set[str] = set()
        self._files: dict[str, str] = {}
        self._deleted_references: set[str] = set()
        self._notices: dict[str, str] = {}  # notice id -> its kind
        self._needs_newline = False
        self._torn_at: int | None = None  # where a line torn by a crash begins, to be cut off
        for entry in self._read():
            self._apply(entry)

    def written_reference(self, delivery_id: str) -> str | None:
        return self._written.get(delivery_id)

    def delivery_of(self, reference: str) -> str | None:
        return self._by_reference.get(reference)

    def is_acknowledged(self, delivery_id: str) -> bool:
        return delivery_id in self._acknowledged

    def was_writing(self, delivery_id: str, file: Path) -> bool:
        return self._writing.get(delivery_id) == str(file)

    def record_writing(self, records: list[FileRecord]) -> None:
        """About to write these files (one append and one fsync for them all)."""
        self._append([self._entry("writing", r.delivery_id, r.reference, r.file, r.notice) for r in records])

    def record_written(self, records: list[FileRecord]) -> None:
        """These files are on disk under their names (one append and one fsync for them all)."""
        self._append([self._entry("written", r.delivery_id, r.reference, r.file, r.notice) for r in records])

    def files(self) -> dict[str, str]:
        """delivery (or notice) id -> the file written for it."""
        return dict(self._files)

    def records_of(self, reference: str) -> list[FileRecord]:
        """The files still recorded for one referral: its own and its notices'."""
        return [
            FileRecord(d, reference, Path(f), self._notices.get(d))
            for d, f in self._files.items()
            if self._written.get(d) == reference
        ]

    def is_deleted(self, reference: str) -> bool:
        return reference in self._deleted_references

    def record_deleted(self, records: list[FileRecord]) -> None:
        """These files are to be deleted from this computer: recorded (durably) before they go."""
        self._append([self._entry("deleted", r.delivery_id, r.reference, r.file, r.notice) for r in records])

    def record_acknowledged(self, delivery_ids: list[str]) -> None:
        self._append([self._entry("acknowledged", d, None, None) for d in delivery_ids])

    @staticmethod
    def _entry(
        event: Event, delivery_id: str, reference: str | None, file: Path | None, notice: str | None = None
    ) -> LedgerEntry:
        return LedgerEntry(
            event=event,
            delivery_id=delivery_id,
            at=datetime.now(UTC),
            reference=reference,
            file=None if file is None else str(file),
            notice=notice,
        )

    def _apply(self, entry: LedgerEntry) -> None:
        if entry.event == "writing" and entry.file is not None:
            self._writing[entry.delivery_id] = entry.file
        elif entry.event == "written" and entry.reference is not None:
            self._written[entry.delivery_id] = entry.reference
            if entry.file is not None:
                self._files[entry.delivery_id] = entry.file
            if entry.notice is None:
                self._by_reference[entry.reference] = entry.delivery_id
            else:
                self._notices[entry.delivery_id] = entry.notice
        elif entry.event == "deleted":
            self._files.pop(entry.delivery_id, None)
            if entry.reference is not None:
                self._deleted_references.add(entry.reference)
        elif entry.event == "acknowledged":
            self._acknowledged.add(entry.delivery_id)

    def _read(self) -> list[LedgerEntry]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise LedgerDamaged(f"cannot read {self.path}: {exc.strerror}") from None
        lines = data.split(b"\n")
        entries: list[LedgerEntry] = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entries.append(_decoder.decode(line))
            except DECODE_ERRORS:
                if number == len(lines):  # a last line without its newline: torn by a crash, never recorded
                    self._torn_at = len(data) - len(line)
                    continue
                raise LedgerDamaged(f"{self.path} line {number} cannot be read; repair or move it") from None
        self._needs_newline = bool(data) and not data.endswith(b"\n") and self._torn_at is None
        return entries

    def _append(self, entries: list[LedgerEntry]) -> None:
        if not entries:
            return
        text = b"".join(_encoder.encode(e) + b"\n" for e in entries)
        if self._torn_at is not None:
            os.truncate(self.path, self._torn_at)  # drop the torn line, so it never sits mid-file
            self._torn_at = None
        durable.append(self.path, b"\n" + text if self._needs_newline else text)
        self._needs_newline = False
        for entry in entries:
            self._apply(entry)
