"""Notices to a clinic about a referral it received: corrected details, erasure, withdrawn consent.

GDPR art. 19: when a patient has their contact details corrected, their data erased or their consent
withdrawn, the clinics the referral went to are told. A notice travels like a referral: sealed to the
clinic's encryption keys, signed by the broker, served from the clinic's inbox and acknowledged. The
envelope's `kind` is the notice kind and its `delivery_id` is the notice's own id (what the clinic
acknowledges); the payload names the referral's delivery and reference, so the clinic tool files it
beside the referral.

A notice is served only once the referral it concerns has reached that clinic — acknowledged, or, for
an erasure or a withdrawal, cancelled after it was made available (the clinic may have fetched it) — so
a clinic never sees a notice about a referral it cannot have received.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import msgspec

from referral_protocol.referral import Patient

NOTICE_PAYLOAD_FORMAT = "referral-broker/notice/v1"


class NoticeKind(StrEnum):
    CORRECTION = "correction"  # art. 16: the patient corrected their details; `patient` holds them all
    ERASURE = "erasure"  # art. 17: the patient asked for their data to be erased
    WITHDRAWAL = "withdrawal"  # art. 7(3): the patient withdrew consent


NOTICE_KINDS = frozenset(k.value for k in NoticeKind)


class NoticePayload(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The plaintext sealed to one clinic in a notice envelope."""

    format: str
    kind: str  # a NoticeKind
    notice_id: str  # the id the clinic acknowledges (the envelope's delivery_id)
    delivery_id: str  # the delivery of the referral this notice concerns
    reference: str  # that referral's reference
    clinic: str
    issued_at: datetime
    requested_at: datetime  # when the patient made the request
    message: str  # what happened and what is asked of the clinic, in bokmål and English (`notice.<kind>`)
    patient: Patient | None = None  # correction: the patient's details as they are now
