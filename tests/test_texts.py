"""Texts that leave the pages keep their exact words now that they live in the catalogues: the consent text
every referral's recorded hash vouches for, the one-time code message and the notices to clinics."""

from __future__ import annotations

import pytest

from referral_broker import texts
from referral_broker.services import catalogue
from referral_broker.services.code_channels import SUBJECT, code_text
from referral_broker.web.i18n import Translator
from referral_protocol import wording
from referral_protocol.consent import CONSENT_LANGUAGES, CONSENT_VERSION, consent_text_sha256
from referral_protocol.notice import NoticeKind


def test_every_consent_version_reads_as_the_text_its_recorded_hash_was_made_of() -> None:
    # The hash referrals have recorded since 2026-11-01, from the texts as they were before the catalogues.
    assert consent_text_sha256("2026-11-01") == "81647baa0f9b2d7db5585fbc6ad0905406bb39aede2c55cfe36c87b57cd12271"
    for version, languages in CONSENT_LANGUAGES.items():
        assert set(wording.consent_texts(version)) == set(languages)
    assert wording.consent_texts(CONSENT_VERSION)["nb"].startswith("Jeg samtykker til at opplysningene")
    assert catalogue.current_consent().text == wording.consent_texts(CONSENT_VERSION)


def test_a_consent_text_edited_in_a_catalogue_is_refused_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    original = wording.messages

    def edited(language: str) -> dict[str, str]:
        found = dict(original(language))
        key = f"consent.{CONSENT_VERSION}"
        if key in found:
            found[key] = found[key].replace("fem måneder", "seks måneder")
        return found

    monkeypatch.setattr(wording, "messages", edited)
    wording.consent_texts.cache_clear()
    try:
        with pytest.raises(wording.ConsentTextChangedError):
            wording.consent_texts(CONSENT_VERSION)
    finally:
        wording.consent_texts.cache_clear()


def test_a_language_the_consent_was_not_written_in_shows_the_bokmal_text_it_agrees_to() -> None:
    for language in texts.languages():
        t = Translator(language)
        expected = language if language in CONSENT_LANGUAGES[CONSENT_VERSION] else "nb"
        assert t.consent_language() == expected
        assert t.consent_text() == wording.consent_texts(CONSENT_VERSION)[expected]


def test_the_one_time_code_message_reads_word_for_word_as_before() -> None:
    assert SUBJECT == "Din engangskode / Your one-time code"
    assert code_text("654321", 15) == (
        "Engangskoden din hos henvisningsformidleren er 654321. Den gjelder i 15 minutter.\n"
        "Ba du ikke om en kode, kan du se bort fra denne meldingen.\n\n"
        "Your one-time code at the referral broker is 654321. It is valid for 15 minutes.\n"
        "If you did not ask for a code, you can ignore this message.\n"
    )


def test_a_notice_tells_the_clinic_in_bokmal_then_english() -> None:
    assert texts.notice_message(NoticeKind.WITHDRAWAL) == (
        "Pasienten har trukket tilbake samtykket til å sende denne henvisningen (personvernforordningen "
        "art. 7 nr. 3). Ikke ta kontakt på grunnlag av den.\n"
        "The patient has withdrawn consent to this referral (GDPR art. 7(3)). Do not act on it."
    )
    for kind in NoticeKind:
        norwegian, english = texts.notice_message(kind).split("\n")
        assert norwegian and english and norwegian != english


def test_category_names_come_from_each_language_s_catalogue() -> None:
    assert Translator("nb").category("dermatology") == "Hudsykdommer"
    assert Translator("en").category("dermatology") == "Dermatology"
    assert Translator("en").category("not-a-category") == "not-a-category"
    assert Translator("nn").category("ophthalmology") == "Augesjukdomar"


def test_the_subject_access_export_explains_itself_word_for_word_as_before() -> None:
    explanation = dict(zip(texts.BOTH, texts.in_both("export.explanation"), strict=True))
    assert explanation["nb"].startswith("Dette er alt henvisningsformidleren har om deg knyttet til adressen")
    assert explanation["en"].endswith("The clinics hold their own copy of what they received; ask them for it.")


def test_every_page_states_the_retention_period_in_the_consent_texts_words() -> None:
    """The consent text (versioned, hash-pinned) says five months after the request was *sent*; the one sentence
    the receipt, the export and the printable export share says the same (issue 22, item 6)."""
    consent = wording.consent_texts(CONSENT_VERSION)
    phrases = {"nb": "i fem måneder etter at henvendelsen er sendt", "en": "for five months after the request is sent"}
    for language, phrase in phrases.items():
        assert phrase in consent[language]
        assert phrase in texts.text(language, "retention.contact")
    for language in texts.languages():
        for key in ("receipt.retention", "export.explanation"):
            if texts.needs(language, key):
                stated = texts.text(language, key)
                assert "måned" not in stated and "månad" not in stated and "month" not in stated, (language, key)
                assert "levert" not in stated and "delivered" not in stated, (language, key)


def test_the_words_for_what_a_clinic_treats_read_as_a_heading_not_a_person() -> None:
    # "Behandler:" reads as "therapist:", "Field (optional)" as a form field (issue 22, item 10).
    assert texts.text("nb", "home.treats") == "Fagområder"
    assert texts.text("en", "home.treats") == "Types of care"
    assert texts.text("en", "form.category") == "Type of care (optional)"
    assert not any("field" in texts.text("en", k).lower() for k in ("form.category", "form.category_none"))
