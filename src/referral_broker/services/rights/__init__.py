"""The patient's rights without the manage link (GDPR art. 7(3), 15–20), through their contact details.

1. A code (`codes`): the patient types an e-mail address or phone number; a six-digit code goes there.
   The same thing happens whether or not anything is linked to it, so the page tells no one whether an
   address has referrals. Limits: a few codes per address per hour, five tries per code, a short life.
2. A session (`sessions`): the right code opens a short session (only its hash is stored) bound to the
   blind index of that address, so it reaches exactly the referrals submitted with it (`linked`).
3. What a session may do, each per referral and each in one transaction with its audit event:
   see (metadata, never content), export everything held as JSON (`export`: access and portability),
   correct the contact details (`correction`: rectification), erase now or withdraw consent
   (`erasure`). Clinics that received the referral are told by a sealed notice (art. 19).

The patient-facing text of the export is in `texts`. Callers use the names below.
"""

from __future__ import annotations

from referral_broker.services.rights.codes import (
    CHANNELS,
    MAX_CODE_ATTEMPTS,
    CodeRefused,
    TooManyCodes,
    request_code,
    verify_code,
)
from referral_broker.services.rights.correction import Rectified, check_correction, rectify
from referral_broker.services.rights.erasure import HeldForLegalClaim, Stopped, erase, withdraw
from referral_broker.services.rights.export import EXPORT_FORMAT, SubjectAccessExport, export, export_document
from referral_broker.services.rights.linked import LinkedView, NotLinked, find, overview
from referral_broker.services.rights.sessions import RightsSession, end_session, session_of

__all__ = [
    "CHANNELS",
    "EXPORT_FORMAT",
    "MAX_CODE_ATTEMPTS",
    "CodeRefused",
    "HeldForLegalClaim",
    "LinkedView",
    "NotLinked",
    "Rectified",
    "RightsSession",
    "Stopped",
    "SubjectAccessExport",
    "TooManyCodes",
    "check_correction",
    "end_session",
    "erase",
    "export",
    "export_document",
    "find",
    "overview",
    "rectify",
    "request_code",
    "session_of",
    "verify_code",
    "withdraw",
]
