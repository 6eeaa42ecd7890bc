"""The patient-facing text of the rights services, in each language; to be replaced by catalogue
look-ups when the text moves to gettext (issue 23 item 2)."""

from __future__ import annotations

#: What the subject-access export says about itself, in every language it is read in.
EXPORT_EXPLANATION = {
    "nb": (
        "Dette er alt henvisningsformidleren har om deg knyttet til adressen du bekreftet. Det du skrev om "
        "hva du trenger hjelp til, ble kryptert til klinikkene du valgte før det ble lagret; formidleren "
        "kan ikke lese det og kan derfor ikke ta det med her. Kontaktopplysningene dine lagres kryptert og "
        "anonymiseres fem måneder etter at henvisningen ble sendt. Klinikkene har sin egen kopi av det de "
        "mottok; spør dem om den."
    ),
    "en": (
        "This is everything the referral broker holds about you linked to the address you confirmed. What "
        "you wrote about what you need help with was encrypted to the clinics you chose before it was stored; "
        "the broker cannot read it and so cannot include it here. Your contact details are stored encrypted "
        "and anonymised five months after the referral was sent. The clinics hold their own copy of what "
        "they received; ask them for it."
    ),
}
