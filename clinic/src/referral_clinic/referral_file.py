"""`OUTDIR/<reference>.json`: one received referral as the clinic keeps it, ready for its journal system."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import msgspec

from referral_protocol.referral import Need, Patient, ReferralPayload, SealedConsent

REFERRAL_FILE_FORMAT = "referral-clinic/referral/v1"

# The reference becomes a file name, so nothing that could climb out of OUTDIR or hide a file is let through.
_FILE_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")


class ReceivedReferral(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    format: str
    reference: str
    delivery_id: str
    submitted_at: datetime
    received_at: datetime
    patient: Patient
    need: Need
    consent: SealedConsent

    @classmethod
    def from_payload(cls, payload: ReferralPayload, *, received_at: datetime) -> ReceivedReferral:
        return cls(
            format=REFERRAL_FILE_FORMAT,
            reference=payload.reference,
            delivery_id=payload.delivery_id,
            submitted_at=payload.submitted_at,
            received_at=received_at,
            patient=payload.patient,
            need=payload.need,
            consent=payload.consent,
        )


_decoder = msgspec.json.Decoder(ReceivedReferral)


def is_file_safe(reference: str) -> bool:
    return _FILE_SAFE.fullmatch(reference) is not None


def path_for(outdir: Path, reference: str) -> Path:
    if not is_file_safe(reference):
        raise ValueError(f"reference {reference!r} cannot be used as a file name")
    return outdir / f"{reference}.json"


def encode(referral: ReceivedReferral) -> bytes:
    """The file's bytes, as `Inbox` writes them (durably, mode 0600, under a name it has made sure is free)."""
    return msgspec.json.format(msgspec.json.encode(referral), indent=2) + b"\n"


def read(path: Path) -> ReceivedReferral:
    return _decoder.decode(path.read_bytes())
