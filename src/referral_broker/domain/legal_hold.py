"""Legal hold: why a referral may be kept past the retention period, and what its note may say.

GDPR art. 17(3)(e) and the privacy statement allow keeping data needed to establish, exercise or defend a legal
claim, or that an authority orders kept. The note says which case or order, never who: it is refused if it looks
like contact details, and it is short.
"""

from __future__ import annotations

import re
from enum import StrEnum

from referral_protocol.errors import DomainError

NOTE_MAX = 200

# An e-mail address, or eight or more digits in a run, spaced as phone numbers are (`+47 912 34 567`, `91234567`,
# an 11-digit national id number). A hyphen or slash ends the run: case numbers (`26-045117TVI-OTIR/02`, `2026/4411`)
# are what a note should hold.
_EMAIL = re.compile(r"\S+@\S+")
_NUMBER = re.compile(r"(?:\d[\s().+]*){8,}")


class HoldReason(StrEnum):
    LEGAL_CLAIM = "legal_claim"  # to establish, exercise or defend a legal claim
    AUTHORITY_ORDER = "authority_order"  # an authority (court, police, Datatilsynet, ...) ordered it kept


class HoldRefused(DomainError):
    """The hold cannot be placed or released as asked; the message says why."""


def checked_note(note: str) -> str:
    """The note trimmed, or HoldRefused saying what is wrong with it."""
    text = " ".join(note.split())
    if not text:
        raise HoldRefused("give a note: which case or order the hold is for (no names or contact details)")
    if len(text) > NOTE_MAX:
        raise HoldRefused(f"the note is {len(text)} characters; at most {NOTE_MAX}")
    if _EMAIL.search(text):
        raise HoldRefused("the note looks like it holds an e-mail address; name the case, not the person")
    if _NUMBER.search(text):
        raise HoldRefused("the note holds a long number (a phone or id number?); name the case, not the person")
    return text


def reason_of(text: str) -> HoldReason:
    try:
        return HoldReason(text)
    except ValueError:
        raise HoldRefused(f"the reason must be one of {', '.join(r.value for r in HoldReason)}") from None
