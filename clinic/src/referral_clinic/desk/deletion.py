"""Deleting a referral from this computer: its file, its notices, its PDF and FHIR bundle, and its marks.

The ledger learns first ("deleted", fsync'd), then the files go, then the folder is made durable. A crash
in between leaves files the ledger calls deleted; `sweep` (run at start and after every pull) finishes
the job, and also removes a notice that arrives for a referral already deleted. The ledger still knows
the delivery as written and acknowledged, so the broker serving it again never brings it back.
Call these while holding the clinic folder's lock: the ledger has one writer at a time.
"""

from __future__ import annotations

from pathlib import Path

from referral_clinic import durable, referral_file
from referral_clinic.desk.states import DeskStates
from referral_clinic.fhir import FHIR_SUFFIX
from referral_clinic.ledger import Ledger

PDF_SUFFIX = ".pdf"


def pdf_path(outdir: Path, reference: str) -> Path:
    return referral_file.path_for(outdir, reference).with_suffix(PDF_SUFFIX)


def files_of(outdir: Path, reference: str) -> list[Path]:
    """Every file this computer holds for a referral in OUTDIR (the referral, notices, PDF, FHIR bundle)."""
    own = referral_file.path_for(outdir, reference)
    found = [own, pdf_path(outdir, reference), outdir / "fhir" / f"{reference}{FHIR_SUFFIX}"]
    found += outdir.glob(f"{reference}.*-*.json")
    return [p for p in found if p.exists()]


class DeletionUnfinished(Exception):
    """The ledger says deleted, but a file (or the mark) could not be removed yet; `sweep` tries again."""


def delete_referral(ledger: Ledger, outdir: Path, reference: str, states: DeskStates) -> int:
    """Delete one referral from this computer; returns how many files went. OSError: nothing was changed.
    DeletionUnfinished: recorded as deleted, and what is left the next `sweep` removes."""
    referral_file.path_for(outdir, reference)  # refuses a reference that is no file name
    ledger.record_deleted(ledger.records_of(reference))
    try:
        states.forget(reference)
        return _remove(outdir, reference)
    except OSError as exc:
        raise DeletionUnfinished(exc.strerror or str(exc)) from None


def sweep(ledger: Ledger, outdir: Path) -> int:
    """Remove the files of referrals the ledger calls deleted (a crash mid-delete, a late notice)."""
    if not outdir.is_dir():
        return 0
    removed = 0
    for reference in {p.name.split(".", 1)[0] for p in outdir.glob("*.json")}:
        if referral_file.is_file_safe(reference) and ledger.is_deleted(reference):
            ledger.record_deleted(ledger.records_of(reference))
            removed += _remove(outdir, reference)
    return removed


def _remove(outdir: Path, reference: str) -> int:
    files = files_of(outdir, reference)
    for path in files:
        path.unlink(missing_ok=True)
    if files:
        durable.fsync_dir(outdir)
        if (outdir / "fhir").is_dir():
            durable.fsync_dir(outdir / "fhir")
    return len(files)
