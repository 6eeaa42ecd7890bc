"""Text a clinic will show or import carries no control characters (issue 20, item 6).

A referral's need and the patient's name refuse control characters other than line breaks and tabs (a
name, one line, none at all), in the form and in the JSON API, each with a clear per-field error; what was
typed stays in the form. The rule is `referral_protocol.validation`'s, shared with the clinic program.
"""

from __future__ import annotations

import html
import re
from datetime import date
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from referral_broker.services.context import BrokerContext
from referral_broker.services.rights import check_correction
from referral_protocol.errors import InvalidRequest
from referral_protocol.referral import ReferralRequest, check_request
from referral_protocol.validation import has_control_characters, without_control_characters
from tests.conftest import EnrolledClinic, referral_json
from tests.patient_web.conftest import send_form

#: The ones the issue names (NUL, BEL, ESC, VT, FF) and their kin: other C0, DEL, C1 (NEL), noncharacters.
REFUSED = ["\x00", "\x07", "\x1b", "\x0b", "\x0c", "\x01", "\x1f", "\x7f", "\x85", "\x9b", "\ufffe", "\uffff"]
LINE_BREAKS_AND_TABS = ["\n", "\r", "\r\n", "\t"]


@pytest.mark.parametrize("char", REFUSED)
def test_control_characters_are_refused_in_text_of_one_line_and_of_several(char: str) -> None:
    assert has_control_characters(f"Vondt i kneet{char}etter trening", multiline=True)
    assert has_control_characters(f"Kari{char}Nordmann", multiline=False)


@pytest.mark.parametrize("char", LINE_BREAKS_AND_TABS)
def test_line_breaks_and_tabs_are_kept_in_text_of_several_lines_only(char: str) -> None:
    assert not has_control_characters(f"Vondt i kneet.{char}Verre om morgenen.", multiline=True)
    assert has_control_characters(f"Kari{char}Nordmann", multiline=False)


def test_ordinary_norwegian_text_and_emoji_pass() -> None:
    text = "Smerter i skulderen – «verre» når jeg løfter. Æ, ø, å; 😟 👨‍👩‍👧"
    assert not has_control_characters(text, multiline=True)
    assert not has_control_characters(text, multiline=False)
    assert without_control_characters(text, multiline=True) == text


def test_old_text_is_shown_with_each_refused_character_replaced_and_line_breaks_kept() -> None:
    assert without_control_characters("a\x00b\x07c\nd\te\x1bf", multiline=True) == "a\ufffdb\ufffdc\nd\te\ufffdf"
    assert without_control_characters("Kari\tNord\nmann\x0c", multiline=False) == "Kari Nord mann\ufffd"


def _request(description: str = "Vondt i kneet", name: str = "Kari Nordmann") -> ReferralRequest:
    import msgspec

    return msgspec.convert(referral_json(["klinikk-a"], description=description, name=name), ReferralRequest)


@pytest.mark.parametrize("char", REFUSED)
def test_the_rules_name_the_need_and_the_name_that_hold_control_characters(char: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_request(
            _request(description=f"Vondt{char} i kneet", name=f"Kari{char}Nordmann"),
            today=date(2026, 12, 1),
            minimum_age=16,
        )
    found = {(e.field, e.code) for e in caught.value.errors}
    assert found == {("need.description", "control_characters"), ("patient.name", "control_characters")}


def test_a_need_of_several_lines_with_tabs_passes_the_rules() -> None:
    checked = check_request(
        _request(description="Vondt i kneet.\r\nVerre om morgenen:\n\t- ved trapper"),
        today=date(2026, 12, 1),
        minimum_age=16,
    )
    assert checked.need.description == "Vondt i kneet.\r\nVerre om morgenen:\n\t- ved trapper"


def test_a_corrected_name_with_a_control_character_is_refused() -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_correction(
            "Kari\x1bNordmann", "kari@example.no", "+4741234567", date(1990, 5, 17), today=date(2026, 12, 1)
        )
    assert [(e.field, e.code) for e in caught.value.errors] == [("name", "control_characters")]


async def _count(broker: BrokerContext) -> int:
    return int(await broker.pool.fetchval("SELECT count(*) FROM referrals"))


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x0b", "\x0c"])
async def test_the_api_refuses_a_need_with_a_control_character_as_a_field_error_and_stores_nothing(
    client: AsyncTestClient[Any], broker: BrokerContext, clinics: dict[str, EnrolledClinic], char: str
) -> None:
    body = referral_json(["fysio-oslo"], description=f"Vondt i kneet{char}etter trening")
    response = await client.post("/api/v1/referrals", json=body)
    assert response.status_code == 422, response.text
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [("need.description", "control_characters")]
    assert await _count(broker) == 0


async def test_the_api_refuses_a_name_with_a_control_character_and_accepts_line_breaks_in_the_need(
    client: AsyncTestClient[Any], broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    bad = await client.post("/api/v1/referrals", json=referral_json(["fysio-oslo"], name="Kari\x07Nordmann"))
    assert bad.status_code == 422
    assert [(e["field"], e["code"]) for e in bad.json()["errors"]] == [("patient.name", "control_characters")]
    good = await client.post(
        "/api/v1/referrals", json=referral_json(["fysio-oslo"], description="Vondt i kneet.\r\n\tVerre om morgenen.")
    )
    assert good.status_code == 201, good.text
    assert await _count(broker) == 1


def _field_error(page: str, field: str) -> str | None:
    match = re.search(rf'<p class="error-message" id="f-{field}-error">(.*?)</p>', page, re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(1))).strip() if match else None


@pytest.mark.parametrize(
    ("lang", "description_message", "name_message"),
    [
        (
            "nb",
            "Feil: Teksten har usynlige spesialtegn som ikke kan sendes, ofte fra noe som er kopiert inn. "
            "Skriv teksten på nytt, eller lim den inn som ren tekst. Linjeskift går fint.",
            "Feil: Navnet har usynlige spesialtegn som ikke kan sendes. Skriv navnet på nytt.",
        ),
        (
            "nn",
            "Feil: Teksten har usynlege spesialteikn som ikkje kan sendast, ofte frå noko som er kopiert inn. "
            "Skriv teksten på nytt, eller lim han inn som rein tekst. Linjeskift går fint.",
            "Feil: Namnet har usynlege spesialteikn som ikkje kan sendast. Skriv namnet på nytt.",
        ),
        (
            "en",
            "Error: The text has invisible special characters that cannot be sent, often from something pasted "
            "in. Type the text again, or paste it as plain text. Line breaks are fine.",
            "Error: Your name has invisible special characters that cannot be sent. Type your name again.",
        ),
    ],
)
async def test_the_form_names_each_field_with_control_characters_in_the_visitors_language_and_keeps_the_text(
    client: AsyncTestClient[Any],
    broker: BrokerContext,
    clinics: dict[str, EnrolledClinic],
    lang: str,
    description_message: str,
    name_message: str,
) -> None:
    typed = "Vondt i kneet\x1b[31m\x07 etter\x0c fotball"
    response = await send_form(client, ["fysio-oslo"], lang=lang, description=typed, name="Kari\x0bNordmann")
    assert response.status_code == 422
    page = response.text
    assert _field_error(page, "description") == description_message
    assert _field_error(page, "name") == name_message
    assert _field_error(page, "email") is None
    kept = re.search(r'<textarea[^>]*name="description"[^>]*>(.*?)</textarea>', page, re.S)
    assert kept and html.unescape(kept.group(1)) == typed  # what was typed, to fix it in place
    assert await _count(broker) == 0
