"""The form: choose clinics, fill in, give consent; mistakes shown next to each field, nothing stored until valid."""

from __future__ import annotations

import hashlib
import html
import re
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from referral_broker.services.context import BrokerContext
from referral_broker.services.settings import Settings
from tests.conftest import EnrolledClinic
from tests.patient_web.conftest import csrf_of, form_token, good_form, manage_token_of, send_form
from tests.patient_web.test_page_security import parse


async def _count(broker: BrokerContext) -> tuple[int, int, int]:
    row = await broker.pool.fetchrow(
        """SELECT (SELECT count(*) FROM referrals) a, (SELECT count(*) FROM deliveries) b,
                  (SELECT count(*) FROM outbox) c"""
    )
    assert row is not None
    return row["a"], row["b"], row["c"]


def _field_error(page: str, field: str) -> str | None:
    """The message shown next to a field, if the field points at it with aria-describedby."""
    match = re.search(rf'<p class="error-message" id="f-{field}-error">(.*?)</p>', page, re.S)
    if not match:
        return None
    assert (
        re.search(rf'id="f-{field}"[^>]*aria-describedby="[^"]*f-{field}-error', page, re.S)
        or re.search(rf'aria-describedby="[^"]*f-{field}-error[^"]*"[^>]*id="f-{field}"', page, re.S)
        or (field == "consent" and 'aria-describedby="f-consent-error"' in page)
    ), f"{field} is not tied to its error"
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(1))).strip()


def _value_of(page: str, field: str) -> str:
    match = re.search(rf'id="f-{field}" name="{field}" type="[a-z]+" value="([^"]*)"', page)
    assert match, field
    return html.unescape(match.group(1))


async def test_clinic_finder_filters_by_what_they_treat_and_city_and_shows_descriptions(
    client: AsyncTestClient[Any], broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    every = (await client.get("/")).text
    for slug in clinics:
        assert f'value="{slug}"' in every
    assert "ikke-klar" not in every  # not verified: not choosable
    assert "Fysioterapi for idrettsskader, nær Majorstuen." in every
    physio = (await client.get("/?category=physiotherapy")).text
    assert 'value="fysio-oslo"' in physio and 'value="fysio-bergen"' in physio and 'value="psyk-oslo"' not in physio
    oslo_physio = (await client.get("/?category=physiotherapy&city=oslo")).text
    assert re.findall(r'name="clinic" value="([^"]+)"', oslo_physio) == ["fysio-oslo"]
    assert "1 klinikk passer" in oslo_physio
    none = (await client.get("/?category=dental&lang=en")).text
    assert "No clinic matches your choice" in none


async def test_form_names_the_chosen_clinics_in_the_consent_and_says_how_to_withdraw(
    client: AsyncTestClient[Any], broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    page = (await client.get("/send?clinic=fysio-oslo&clinic=hud-bergen")).text
    consent = page[page.index('<fieldset class="consent"') :]
    assert "Klinikk fysio-oslo" in consent and "Klinikk hud-bergen" in consent
    assert "Klinikk psyk-oslo" not in page
    assert "sendes til Klinikk fysio-oslo og Klinikk hud-bergen." in consent
    assert "Slik trekker du samtykket" in consent
    assert "Jeg samtykker til at opplysningene" in consent  # the current consent text, from the domain
    assert re.search(r'<input type="checkbox" id="f-consent" name="consent" required\s*>', consent)  # not pre-ticked
    english = (await client.get("/send?clinic=fysio-oslo&lang=en")).text
    assert "consent to the request being sent to Klinikk fysio-oslo." in english
    assert "How to withdraw" in english


async def test_choosing_no_clinic_or_an_unavailable_one_goes_back_to_the_list_with_a_message(
    client: AsyncTestClient[Any], broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    none = await client.get("/send")
    assert none.status_code == 400 and "Velg minst én klinikk" in none.text
    pending = await client.get("/send?clinic=fysio-oslo&clinic=ikke-klar")
    assert pending.status_code == 400 and "kan ikke ta imot henvendelser nå" in pending.text
    assert re.search(r'value="fysio-oslo"\s+aria-describedby="clinic-fysio-oslo-about" checked', pending.text)


async def test_ticked_consent_checkbox_sends_on_and_is_accepted(
    client: AsyncTestClient[Any], broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    response = await send_form(client, ["fysio-oslo", "psyk-oslo"])
    assert response.status_code == 200, response.text
    assert "Henvendelsen er sendt" in response.text
    assert await _count(broker) == (1, 2, 1)


@pytest.mark.parametrize("value", [None, "", "off", "false", "0"])
async def test_unticked_consent_is_refused_and_nothing_is_stored(
    client: AsyncTestClient[Any], broker: BrokerContext, clinics: dict[str, EnrolledClinic], value: str | None
) -> None:
    if value is None:
        response = await send_form(client, ["fysio-oslo"], drop=("consent",))
    else:
        response = await send_form(client, ["fysio-oslo"], consent=value)
    assert response.status_code == 422
    assert _field_error(response.text, "consent") == "Feil: Du må krysse av for samtykke for å sende henvendelsen"
    assert await _count(broker) == (0, 0, 0)


TYPED = {
    "name": "Kari <b>Nordmann</b>",
    "email": "kari@",
    "phone": "123",
    "birth_date": "31.02.1990",
    "description": "Vondt i kneet & hofta",
}


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        (
            "nb",
            {
                "email": "Feil: Skriv en gyldig e-postadresse, for eksempel kari@eksempel.no",
                "phone": "Feil: Skriv et gyldig telefonnummer, for eksempel 412 34 567 eller +47 412 34 567",
                "birth_date": "Feil: Denne fødselsdatoen er ikke mulig. Sjekk dag, måned og år.",
                "consent": "Feil: Du må krysse av for samtykke for å sende henvendelsen",
            },
        ),
        (
            "en",
            {
                "email": "Error: Write a valid e-mail address, for example kari@example.no",
                "phone": "Error: Write a valid phone number, for example 412 34 567 or +47 412 34 567",
                "birth_date": "Error: This date of birth is not possible. Check the day, month and year.",
                "consent": "Error: Tick the consent box to send the request",
            },
        ),
    ],
)
async def test_mistakes_keep_what_was_typed_and_show_translated_messages_next_to_each_field(
    client: AsyncTestClient[Any],
    broker: BrokerContext,
    clinics: dict[str, EnrolledClinic],
    lang: str,
    expected: dict[str, str],
) -> None:
    response = await send_form(client, ["fysio-oslo"], lang=lang, drop=("consent",), **TYPED)
    assert response.status_code == 422
    page = response.text
    assert parse(page).html_lang == lang
    for field, message in expected.items():
        assert _field_error(page, field) == message
    assert _field_error(page, "name") is None and _field_error(page, "description") is None
    for field in ("name", "email", "phone", "birth_date"):
        assert _value_of(page, field) == TYPED[field]
    assert "Kari &lt;b&gt;Nordmann&lt;/b&gt;" in page  # kept, and escaped
    assert ">Vondt i kneet &amp; hofta</textarea>" in page
    assert '<option value="physiotherapy" selected>' in page
    summary = page[page.index('class="error-summary"') : page.index("</div>", page.index('class="error-summary"'))]
    assert [f for f in re.findall(r'href="#f-([a-z_]+)"', summary)] == ["email", "phone", "birth_date", "consent"]
    assert await _count(broker) == (0, 0, 0)


async def test_empty_form_names_every_missing_field_at_once(
    client: AsyncTestClient[Any], broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    response = await send_form(
        client, ["fysio-oslo"], lang="en", drop=("consent",), name="", email="", phone="", birth_date="", description=""
    )
    page = response.text
    assert _field_error(page, "description") == "Error: Describe what you need help with"
    assert _field_error(page, "name") == "Error: Write your full name"
    assert _field_error(page, "email") == "Error: Write your e-mail address"
    assert _field_error(page, "phone") == "Error: Write your mobile number"
    assert _field_error(page, "birth_date") == "Error: Write your date of birth"
    assert _field_error(page, "consent") == "Error: Tick the consent box to send the request"
    assert await _count(broker) == (0, 0, 0)


@pytest.mark.parametrize(
    ("phone", "birth_date"),
    [
        ("412 34 567", "17.05.1990"),
        ("+47 412 34 567", "17.5.1990"),
        ("0047 41234567", "1990-05-17"),
        ("41234567", "17051990"),
        ("+46 70 123 45 67", " 17/05/1990 "),
    ],
)
async def test_norwegian_ways_of_writing_phone_numbers_and_dates_are_accepted(
    client: AsyncTestClient[Any],
    broker: BrokerContext,
    clinics: dict[str, EnrolledClinic],
    phone: str,
    birth_date: str,
) -> None:
    response = await send_form(client, ["fysio-oslo"], phone=phone, birth_date=birth_date)
    assert response.status_code == 200, re.findall(r'class="error-message"[^>]*>(.*?)</p>', response.text)
    assert await _count(broker) == (1, 1, 1)


async def test_too_young_is_told_the_minimum_age_in_their_language(
    client: AsyncTestClient[Any], broker: BrokerContext, clinics: dict[str, EnrolledClinic], settings: Settings
) -> None:
    response = await send_form(client, ["fysio-oslo"], birth_date="01.01.2020")
    assert _field_error(response.text, "birth_date") == (
        f"Feil: Du må være minst {settings.minimum_age} år for å sende en henvendelse selv. "
        "Be en forelder eller foresatt sende den for deg."
    )
    response = await send_form(client, ["fysio-oslo"], lang="en", birth_date="1.1.2020")
    assert f"at least {settings.minimum_age} years old" in (_field_error(response.text, "birth_date") or "")
    assert await _count(broker) == (0, 0, 0)


async def test_unreadable_birth_date_asks_for_the_format(
    client: AsyncTestClient[Any], broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    response = await send_form(client, ["fysio-oslo"], birth_date="17. mai 90", email="nope")
    assert (
        _field_error(response.text, "birth_date") == "Feil: Skriv fødselsdatoen som dd.mm.åååå, for eksempel 17.05.1990"
    )
    assert _field_error(response.text, "email")  # the other fields are still checked in the same round
    assert _value_of(response.text, "birth_date") == "17. mai 90"


async def test_tampered_hidden_fields_are_refused_without_storing(
    client: AsyncTestClient[Any], broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    unknown = await send_form(client, ["fysio-oslo", "ukjent-klinikk"], token_from=["fysio-oslo"])
    assert unknown.status_code == 422 and "En av klinikkene finnes ikke lenger" in unknown.text
    pending = await send_form(client, ["ikke-klar"], token_from=["fysio-oslo"])
    assert pending.status_code == 422 and "kan ikke ta imot henvendelser nå" in pending.text
    bad_slug = await send_form(client, ["Not A Slug!"], token_from=["fysio-oslo"])
    assert bad_slug.status_code == 422 and "Velg klinikkene fra listen" in bad_slug.text
    old_consent = await send_form(client, ["fysio-oslo"], consent_version="2020-01-01")
    assert old_consent.status_code == 422 and "Samtykketeksten er endret" in old_consent.text
    bad_category = await send_form(client, ["fysio-oslo"], category="astrology")
    assert bad_category.status_code == 422 and "Velg et fagområde fra listen" in bad_category.text
    long_name = await send_form(client, ["fysio-oslo"], name="K" * 201, phone="1")
    assert "høyst 200 tegn" in long_name.text and _field_error(long_name.text, "phone")
    assert await _count(broker) == (0, 0, 0)


async def test_receipt_shows_reference_clinics_next_steps_retention_and_the_private_link(
    client: AsyncTestClient[Any], broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    response = await send_form(client, ["fysio-oslo", "hud-bergen"], lang="en")
    page = response.text
    reference = await broker.pool.fetchval("SELECT reference FROM referrals")
    assert f"<strong>{reference}</strong>" in page
    assert "<li>Klinikk fysio-oslo</li>" in page and "<li>Klinikk hud-bergen</li>" in page
    assert "What happens next?" in page
    assert (
        "We keep your contact details encrypted for five months after the request is sent, and then delete them."
        in page
    )
    token = manage_token_of(page)
    assert f'<a href="https://broker.test/manage/{token}">' in page
    assert 'class="language-switch"' not in page  # a link would lose the only copy of the private link
    # The switch is a form posting the token (already on the page), never a URL holding it.
    assert '<form method="post" action="/receipt?lang=nb">' in page and f'name="token" value="{token}"' in page
    switched = await client.post("/receipt?lang=nb", data={"_csrf_token": csrf_of(page), "token": token})
    assert switched.status_code == 200 and '<html lang="nb">' in switched.text
    assert "Henvendelsen er sendt" in switched.text and f"<strong>{reference}</strong>" in switched.text
    assert manage_token_of(switched.text) == token
    assert "<li>Klinikk fysio-oslo</li>" in switched.text and "<li>Klinikk hud-bergen</li>" in switched.text
    assert "allerede sendt" not in switched.text and switched.headers["cache-control"] == "no-store"
    wrong = await client.post("/receipt?lang=nb", data={"_csrf_token": csrf_of(page), "token": token[:-3] + "xyz"})
    assert wrong.status_code == 404


async def test_manage_token_has_at_least_128_bits_and_is_stored_only_hashed(
    client: AsyncTestClient[Any], broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    tokens = []
    for _ in range(3):
        tokens.append(manage_token_of((await send_form(client, ["fysio-oslo"])).text))
    assert len(set(tokens)) == 3
    for token in tokens:
        assert len(token) * 6 >= 128  # base64url: six bits a character
        stored = await broker.pool.fetchval(
            "SELECT count(*) FROM referrals WHERE manage_token_hash = $1", hashlib.sha256(token.encode()).digest()
        )
        assert stored == 1
    dump = "\n".join(str(dict(r)) for r in await broker.pool.fetch("SELECT * FROM referrals")) + "\n".join(
        str(dict(r)) for r in await broker.pool.fetch("SELECT * FROM audit_events")
    )
    for token in tokens:
        assert token not in dump and token.encode() not in dump.encode()


async def test_honeypot_filled_is_refused_and_nothing_is_stored(
    client: AsyncTestClient[Any], broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    response = await send_form(client, ["fysio-oslo"], website="http://spam.example")
    assert response.status_code == 400
    assert "Henvendelsen ble ikke tatt imot" in response.text and "ingenting er lagret" in response.text
    assert await _count(broker) == (0, 0, 0)
    form = (await client.get("/send?clinic=fysio-oslo")).text
    assert '<div class="trap">' in form and 'name="website"' in form and 'tabindex="-1"' in form


async def test_body_over_the_cap_gets_a_page_and_nothing_is_stored(
    client: AsyncTestClient[Any], broker: BrokerContext, clinics: dict[str, EnrolledClinic], settings: Settings
) -> None:
    token = await form_token(client, ["fysio-oslo"], lang="en")
    data = {**good_form(["fysio-oslo"]), "_csrf_token": token, "description": "x" * settings.max_body_bytes}
    response = await client.post("/send", data=data)
    assert response.status_code == 413
    assert "The form is too large" in response.text
    assert await _count(broker) == (0, 0, 0)
