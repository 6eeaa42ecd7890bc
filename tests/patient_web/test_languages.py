"""Both languages say everything: the catalogues match, every text a template asks for exists, every
error the rules can give has a message in each language."""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime

import pytest

from referral_broker.web.i18n import CATALOGUES, LANGUAGES, Translator, choose_language, from_accept_language
from referral_broker.web.pages import TEMPLATES_DIR
from referral_broker.web.patient.referral_form import messages_by_field, parse_birth_date

#: Every (field, code) the form and the domain rules can report on a patient's form.
FIELD_ERRORS = [
    ("clinics", "required"),
    ("clinics", "duplicate"),
    ("clinics[0]", "unknown"),
    ("clinics[1]", "unavailable"),
    ("need.category", "unknown"),
    ("need.description", "required"),
    ("patient.name", "invalid"),
    ("patient.email", "invalid"),
    ("patient.phone", "invalid"),
    ("patient.birth_date", "invalid"),
    ("patient.birth_date", "too_young"),
    ("birth_date", "format"),
    ("consent.accepted", "required"),
    ("consent.version", "outdated"),
    ("name", "required"),
    ("email", "required"),
    ("phone", "required"),
    ("birth_date", "required"),
    ("description", "required"),
]


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_both_catalogues_have_the_same_keys_and_placeholders() -> None:
    nb, en = CATALOGUES["nb"], CATALOGUES["en"]
    assert set(nb) == set(en)
    for key in nb:
        if key == "date.format":  # each language picks from the same parts of a date
            parts = {"day", "month", "month_name", "year", "hour", "minute"}
            assert _placeholders(nb[key]) <= parts and _placeholders(en[key]) <= parts
            continue
        assert _placeholders(nb[key]) == _placeholders(en[key]), key
        assert nb[key].strip() and en[key].strip(), key


def test_every_text_a_template_asks_for_exists() -> None:
    keys: set[str] = set()
    prefixes: set[str] = set()
    for template in TEMPLATES_DIR.glob("patient/*.html"):
        source = template.read_text()
        keys |= set(re.findall(r"""\bt\(\s*["']([a-z_.]+)["']""", source))
        prefixes |= set(re.findall(r"""\bt\(\s*["']([a-z_.]+\.)["']\s*~""", source))
    keys |= set(re.findall(r"""\bt\(\s*["']([a-z_.]+)["']""", (TEMPLATES_DIR / "base.html").read_text()))
    assert len(keys) > 40
    for key in keys - prefixes:
        assert key in CATALOGUES["nb"], key
    for status in ("waiting", "available", "acknowledged", "dead", "cancelled", "expired"):
        assert f"status.{status}" in CATALOGUES["nb"] and f"status.{status}_detail" in CATALOGUES["nb"]
    for problem in ("not_found", "csrf", "too_many", "too_large", "refused", "generic"):
        assert f"error_page.{problem}" in CATALOGUES["nb"] and f"error_page.{problem}_title" in CATALOGUES["nb"]


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_field_error_has_its_own_message_in_each_language(language: str) -> None:
    t = Translator(language)  # type: ignore[arg-type]
    generic = t("error.generic")
    for field, code in FIELD_ERRORS:
        from referral_protocol.errors import FieldError

        messages = messages_by_field([FieldError(field, code, "x")], t, minimum_age=16)
        assert len(messages) == 1, (field, code)
        assert next(iter(messages.values())) != generic, (field, code)
    assert (
        "16" in messages_by_field([FieldError("patient.birth_date", "too_young", "")], t, minimum_age=16)["birth_date"]
    )


@pytest.mark.parametrize(
    ("header", "language"),
    [
        (None, None),
        ("", None),
        ("en-GB,en;q=0.9", "en"),
        ("nb-NO,nb;q=0.9,en;q=0.8", "nb"),
        ("no", "nb"),
        ("nn-NO", "nb"),
        ("de-DE,en;q=0.5,nb;q=0.7", "nb"),
        ("de-DE,en;q=0.7,nb;q=0.5", "en"),
        ("en;q=0, nb;q=0.1", "nb"),
        ("fr, de", None),
        ("en;q=oops", None),
    ],
)
def test_accept_language_is_respected(header: str | None, language: str | None) -> None:
    assert from_accept_language(header) == language


def test_link_then_cookie_then_browser_then_bokmal() -> None:
    assert choose_language("en", "nb", "nb") == "en"
    assert choose_language(None, "en", "nb") == "en"
    assert choose_language("xx", None, "en") == "en"
    assert choose_language(None, "zz", "fr") == "nb"


def test_times_are_written_in_norwegian_time_the_way_each_language_writes_them() -> None:
    moment = datetime(2026, 1, 5, 23, 30, tzinfo=UTC)  # already 6 January in Oslo
    assert Translator("nb").when(moment) == "06.01.2026 kl. 00:30"
    assert Translator("en").when(moment) == "6 January 2026 at 00:30"
    assert Translator("en").listing(["A", "B", "C"]) == "A, B and C"
    assert Translator("nb").listing(["A", "B"]) == "A og B"


@pytest.mark.parametrize(
    ("typed", "iso"),
    [
        ("17.05.1990", "1990-05-17"),
        ("7.5.1990", "1990-05-07"),
        ("17/05/1990", "1990-05-17"),
        ("17-05-1990", "1990-05-17"),
        ("17 05 1990", "1990-05-17"),
        ("17051990", "1990-05-17"),
        ("1990-05-17", "1990-05-17"),
    ],
)
def test_birth_dates_as_people_type_them(typed: str, iso: str) -> None:
    assert parse_birth_date(typed).isoformat() == iso
