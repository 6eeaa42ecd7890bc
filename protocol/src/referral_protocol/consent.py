"""The consent a patient gives: the single source of its version and text."""

from __future__ import annotations

import hashlib

import msgspec

CONSENT_VERSION = "2026-11-01"

CONSENT_TEXT: dict[str, str] = {
    "nb": (
        "Jeg samtykker til at opplysningene i denne henvendelsen, også helseopplysninger, sendes kryptert "
        "til klinikkene jeg har valgt, og bare til dem. Formidleren kan ikke lese hva henvendelsen gjelder. "
        "Mine kontaktopplysninger lagres kryptert hos formidleren i fem måneder etter at henvendelsen er "
        "sendt, og slettes deretter. Jeg kan når som helst trekke samtykket tilbake med lenken på "
        "kvitteringen; da stanses alt som ennå ikke er levert."
    ),
    "en": (
        "I consent to the information in this request, including health information, being sent encrypted "
        "to the clinics I have chosen, and only to them. The broker cannot read what the request is about. "
        "My contact details are kept encrypted by the broker for five months after the request is sent, and "
        "then deleted. I can withdraw this consent at any time with the link on my receipt; everything not "
        "yet delivered is then stopped."
    ),
}


def consent_text_sha256(version: str = CONSENT_VERSION) -> str:
    """Hash of the consent texts of `version`, recorded with each referral as proof of what was shown."""
    if version != CONSENT_VERSION:
        raise KeyError(version)
    canonical = msgspec.json.encode(sorted(CONSENT_TEXT.items()))
    return hashlib.sha256(canonical).hexdigest()
