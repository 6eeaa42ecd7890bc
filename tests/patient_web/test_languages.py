"""Both languages say everything: the catalogues match, every text a template asks for exists, every
error the rules can give has a message in each language."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from referral_broker import texts
from referral_broker.web.i18n import LANGUAGES, OPS_LANGUAGES, Translator, choose_language, from_accept_language
from referral_broker.web.pages import TEMPLATES_DIR
from referral_broker.web.patient.referral_form import messages_by_field, parse_birth_date
from tests.conftest import EnrolledClinic

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
    return set(re.findall(r"%\((\w+)\)s", text))


def _key(message_id: object) -> str:
    return message_id if isinstance(message_id, str) else message_id[0]  # type: ignore[index,return-value]


def test_every_catalogue_has_the_same_keys_and_placeholders() -> None:
    nb = {m.id: m.string for m in texts.catalogue("nb") if m.id}
    for language in LANGUAGES:
        other = {m.id: m.string for m in texts.catalogue(language) if m.id}
        needed = {key: text for key, text in nb.items() if texts.needs(language, _key(key))}
        assert set(other) == set(needed), language
        for key, text in needed.items():
            theirs = other[key]
            for mine, its in zip(
                text if isinstance(text, tuple) else [text],
                theirs if isinstance(theirs, tuple) else [theirs],
                strict=True,
            ):
                assert _placeholders(mine) == _placeholders(its), (language, key)
                assert mine.strip() and its.strip(), (language, key)


def test_every_text_a_template_asks_for_exists() -> None:
    keys: set[str] = set()
    prefixes: set[str] = set()
    for template in TEMPLATES_DIR.glob("patient/*.html"):
        source = template.read_text()
        keys |= set(re.findall(r"""\b_\(\s*["']([a-z_.]+)["']""", source))
        prefixes |= set(re.findall(r"""\b_\(\s*["']([a-z_.]+\.)["']\s*~""", source))
    keys |= set(re.findall(r"""\b_\(\s*["']([a-z_.]+)["']""", (TEMPLATES_DIR / "base.html").read_text()))
    assert len(keys) > 40
    nb = texts.keys("nb")
    for key in keys - prefixes:
        assert key in nb, key
    for status in ("waiting", "available", "acknowledged", "dead", "cancelled", "expired"):
        assert f"status.{status}" in nb and f"status.{status}_detail" in nb
    for limit in ("accepted", "refused"):
        assert f"form.limit.{limit}" in nb
    for problem in ("not_found", "csrf", "too_many", "too_large", "refused", "generic"):
        assert f"error_page.{problem}" in nb and f"error_page.{problem}_title" in nb


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
        ("nn-NO", "nn"),
        ("nn", "nn"),
        ("no-NO,nn;q=0.9", "nb"),
        ("en;q=0.5,nn-NO;q=0.8,nb;q=0.7", "nn"),
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
    assert choose_language("nn", "en", "en") == "nn"
    assert choose_language(None, "nn", "en") == "nn"


def test_the_operators_pages_speak_bokmal_for_nynorsk() -> None:
    assert from_accept_language("nn-NO,en;q=0.5", OPS_LANGUAGES) == "nb"
    assert choose_language("nn", None, None, OPS_LANGUAGES) == "nb"
    assert choose_language(None, "nn", "en", OPS_LANGUAGES) == "nb"
    assert choose_language(None, None, "en-GB", OPS_LANGUAGES) == "en"


def test_times_are_written_in_norwegian_time_the_way_each_language_writes_them() -> None:
    moment = datetime(2026, 1, 5, 23, 30, tzinfo=UTC)  # already 6 January in Oslo
    assert Translator("nb").when(moment) == "6. januar 2026 kl. 00:30"
    assert Translator("en").when(moment) == "6 January 2026 at 00:30"
    assert Translator("en").listing(["A", "B", "C"]) == "A, B and C"
    assert Translator("nb").listing(["A", "B"]) == "A og B"
    # One date style per language: a moment reads as the day does, with the time after it (issue 22, item 10).
    for language in ("nb", "nn", "en"):
        t = Translator(language)
        assert t.when(moment).startswith(t.day(moment) + " ")


@pytest.mark.parametrize(
    ("language", "when", "day", "listing", "one", "two"),
    [
        ("nb", "6. januar 2026 kl. 00:30", "6. januar 2026", "A, B og C", "1 klinikk passer", "2 klinikker passer"),
        ("en", "6 January 2026 at 00:30", "6 January 2026", "A, B and C", "1 clinic matches", "2 clinics match"),
        ("nn", "6. januar 2026 kl. 00:30", "6. januar 2026", "A, B og C", "1 klinikk passar", "2 klinikkar passar"),
    ],
)
def test_dates_lists_and_plurals_in_each_language(
    language: str, when: str, day: str, listing: str, one: str, two: str
) -> None:
    t = Translator(language)
    moment = datetime(2026, 1, 5, 23, 30, tzinfo=UTC)  # already 6 January in Oslo
    assert t.when(moment) == when
    assert t.day(moment) == day
    assert t.listing(["A", "B", "C"]) == listing
    assert t.listing([]) == "" and t.listing(["A"]) == "A"
    assert t.ngettext("home.count", "home.count_plural", 1) % {"num": 1} == one
    assert t.ngettext("home.count", "home.count_plural", 2) % {"num": 2} == two


def test_every_catalogue_speaks_its_own_language() -> None:
    assert LANGUAGES == ("nb", "en", "nn")
    names = {language: Translator(language)("site.language_name") for language in LANGUAGES}
    assert names == {"nb": "Bokmål", "en": "English", "nn": "Nynorsk"}
    assert Translator("nn")("home.title") == "Finn ein klinikk"
    with pytest.raises(KeyError):
        Translator("nn")("ops.nav.dashboard")  # the operators' pages are not written in Nynorsk


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


async def test_nynorsk_comes_from_the_browser_and_from_the_language_switch(
    client: AsyncTestClient[Any], clinics: dict[str, EnrolledClinic]
) -> None:
    from_browser = (await client.get("/", headers={"accept-language": "nn-NO,nb;q=0.9,en;q=0.5"})).text
    assert '<html lang="nn">' in from_browser and "<h1>Finn ein klinikk</h1>" in from_browser
    # A bokmål page links to the page in Nynorsk and in English, each named in its own language.
    bokmal = (await client.get("/?category=physiotherapy", headers={"accept-language": "nb"})).text
    links = re.findall(r'<a class="language-switch" href="([^"]+)" lang="(\w+)"[^>]*>([^<]+)</a>', bokmal)
    assert links == [
        ("?category=physiotherapy&amp;lang=en", "en", "English"),
        ("?category=physiotherapy&amp;lang=nn", "nn", "Nynorsk"),
    ]
    switched = await client.get("/?category=physiotherapy&lang=nn", headers={"accept-language": "nb"})
    assert '<html lang="nn">' in switched.text and "2 klinikkar passar" in switched.text
    assert "__Host-lang=nn" in switched.headers["set-cookie"]
    # The choice is remembered over what the browser prefers; the form says the consent text is bokmål's.
    form = (await client.get("/send?clinic=fysio-oslo", headers={"accept-language": "en"})).text
    assert '<html lang="nn">' in form and "Send førespurnad" in form
    assert "Samtykketeksten finst berre på bokmål og engelsk" in form
    assert '<blockquote lang="nb"><p>Jeg samtykker til at opplysningene' in form
