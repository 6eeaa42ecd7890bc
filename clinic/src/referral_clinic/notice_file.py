"""`OUTDIR/<reference>.<kind>-<notice id>.json`: a notice about a received referral, filed beside it.

One file per notice (its id in the name), so a second correction never replaces the first and a
repeated pull recognises what it wrote. The FHIR export applies them in the order they were issued.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import msgspec

from referral_clinic.referral_file import is_file_safe
from referral_protocol.notice import NOTICE_KINDS, NoticePayload
from referral_protocol.referral import Patient

NOTICE_FILE_FORMAT = "referral-clinic/notice/v1"


class ReceivedNotice(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    format: str
    kind: str
    notice_id: str
    delivery_id: str  # the referral's delivery
    reference: str
    issued_at: datetime
    requested_at: datetime
    received_at: datetime
    message: str
    patient: Patient | None = None  # correction: the patient's details as they are now

    @classmethod
    def from_payload(cls, payload: NoticePayload, *, received_at: datetime) -> ReceivedNotice:
        return cls(
            format=NOTICE_FILE_FORMAT,
            kind=payload.kind,
            notice_id=payload.notice_id,
            delivery_id=payload.delivery_id,
            reference=payload.reference,
            issued_at=payload.issued_at,
            requested_at=payload.requested_at,
            received_at=received_at,
            message=payload.message,
            patient=payload.patient,
        )


_decoder = msgspec.json.Decoder(ReceivedNotice)


def path_for(outdir: Path, reference: str, kind: str, notice_id: str) -> Path:
    if not (is_file_safe(reference) and is_file_safe(notice_id)) or kind not in NOTICE_KINDS:
        raise ValueError("a notice's reference, kind and id must be usable in a file name")
    return outdir / f"{reference}.{kind}-{notice_id}.json"


def notices_of(outdir: Path, reference: str) -> list[ReceivedNotice]:
    """The notices filed for one referral, oldest first."""
    found = [read(p) for p in outdir.glob(f"{reference}.*-*.json") if not p.name.endswith(".fhir.json")]
    return sorted((n for n in found if n.reference == reference), key=lambda n: (n.issued_at, n.notice_id))


def encode(notice: ReceivedNotice) -> bytes:
    """The file's bytes, as `Inbox` writes them (durably, mode 0600, under a name it has made sure is free)."""
    return msgspec.json.format(msgspec.json.encode(notice), indent=2) + b"\n"


def read(path: Path) -> ReceivedNotice:
    return _decoder.decode(path.read_bytes())
