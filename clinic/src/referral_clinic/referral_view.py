"""One referral as the clinic should see it now: its file with the notices filed beside it applied.

The referral file keeps what was received; a correction, withdrawal or erasure arrives as a separate
file (`notice_file`). Whatever shows or exports a referral (the desk, its print view and PDF, later the
FHIR export) reads it through `load`, so all of them apply the notices the same way: corrections in
the order they were issued, each with what it changed, and a withdrawal or erasure kept as a fact
about the whole referral.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import msgspec

from referral_clinic import notice_file, referral_file
from referral_clinic.notice_file import ReceivedNotice
from referral_protocol.notice import NoticeKind
from referral_protocol.referral import Need, Patient, SealedConsent, readable_need, readable_patient

PATIENT_FIELDS = ("name", "email", "phone", "birth_date")


class ReferralUnreadable(Exception):
    """A referral's file, or a notice beside it, cannot be read; the message names the file, not its content."""


@dataclass(frozen=True)
class Change:
    field: str  # one of PATIENT_FIELDS
    before: str
    after: str


@dataclass(frozen=True)
class AppliedCorrection:
    notice_id: str
    issued_at: datetime
    received_at: datetime
    changes: list[Change]


@dataclass(frozen=True)
class LocalReferral:
    reference: str
    delivery_id: str
    submitted_at: datetime
    received_at: datetime
    patient: Patient  # as it is now, corrections applied
    received_patient: Patient  # as the referral first arrived
    need: Need
    consent: SealedConsent
    corrections: list[AppliedCorrection] = field(default_factory=list)
    withdrawal: ReceivedNotice | None = None
    erasure: ReceivedNotice | None = None
    notices: list[ReceivedNotice] = field(default_factory=list)

    @property
    def last_changed_at(self) -> datetime:
        """When this clinic last received something about the referral (the file or a notice)."""
        return max([self.received_at, *(n.received_at for n in self.notices)])


@dataclass(frozen=True, order=True)
class FileSeen:
    name: str
    mtime_ns: int
    size: int


def files_by_reference(outdir: Path) -> dict[str, list[FileSeen]]:
    """Every file in `outdir` by the referral it belongs to (its name up to the first dot), from one listing
    of the folder: a clinic keeps thousands, and a glob per referral would read the folder once per referral."""
    try:
        entries = list(os.scandir(outdir))
    except (FileNotFoundError, NotADirectoryError):
        return {}
    found: dict[str, list[FileSeen]] = {}
    for entry in entries:
        reference = entry.name.split(".", 1)[0]
        if not referral_file.is_file_safe(reference):
            continue
        try:
            if not entry.is_file():
                continue
            seen = entry.stat()
        except FileNotFoundError:
            continue  # deleted meanwhile
        found.setdefault(reference, []).append(FileSeen(entry.name, seen.st_mtime_ns, seen.st_size))
    return {r: sorted(files) for r, files in found.items() if any(f.name == f"{r}.json" for f in files)}


def references_in(outdir: Path) -> list[str]:
    """The references of the referral files in `outdir` (notice files and FHIR bundles are not referrals)."""
    return sorted(files_by_reference(outdir))


def load(outdir: Path, reference: str) -> LocalReferral:
    """The referral `reference` with every notice filed beside it applied."""
    path = referral_file.path_for(outdir, reference)
    try:
        received = referral_file.read(path)
        notices = notice_file.notices_of(outdir, reference)
    except FileNotFoundError:
        raise
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ReferralUnreadable(f"{path.name} or a notice beside it cannot be read: {type(exc).__name__}") from None
    if received.reference != reference:
        raise ReferralUnreadable(f"{path.name} holds another reference")
    # Shown, printed and exported without control characters, though older referrals may carry them.
    received_patient = readable_patient(received.patient)
    patient = received_patient
    corrections: list[AppliedCorrection] = []
    withdrawal = erasure = None
    for notice in notices:
        if notice.delivery_id != received.delivery_id:
            continue  # about another delivery under this reference: not this file's
        if notice.kind == NoticeKind.CORRECTION and notice.patient is not None:
            corrected = readable_patient(notice.patient)
            changes = _changes(patient, corrected)
            patient = corrected
            corrections.append(AppliedCorrection(notice.notice_id, notice.issued_at, notice.received_at, changes))
        elif notice.kind == NoticeKind.WITHDRAWAL and withdrawal is None:
            withdrawal = notice
        elif notice.kind == NoticeKind.ERASURE and erasure is None:
            erasure = notice
    return LocalReferral(
        reference=received.reference,
        delivery_id=received.delivery_id,
        submitted_at=received.submitted_at,
        received_at=received.received_at,
        patient=patient,
        received_patient=received_patient,
        need=readable_need(received.need),
        consent=received.consent,
        corrections=corrections,
        withdrawal=withdrawal,
        erasure=erasure,
        notices=[n for n in notices if n.delivery_id == received.delivery_id],
    )


def _changes(before: Patient, after: Patient) -> list[Change]:
    return [
        Change(name, str(getattr(before, name)), str(getattr(after, name)))
        for name in PATIENT_FIELDS
        if getattr(before, name) != getattr(after, name)
    ]
