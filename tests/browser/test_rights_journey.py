"""A patient without the manage link, in a real browser, in bokmål and in English: from the start page to
the rights page, a mistyped address, the code from the e-mail (a local SMTP sink), a wrong code, the list
of their requests, the download, a correction, withdrawal, erasure and signing out.

Each step is checked with axe-core, for requests to other origins and console complaints, and
photographed at phone and desktop width.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from playwright.async_api import Browser, expect

from referral_broker.services import dispatch
from referral_broker.services.context import BrokerContext
from referral_broker.services.settings import Settings
from referral_broker.store import deliveries
from referral_broker.web.app import create_app
from tests.browser.conftest import CLINIC_NAMES, PHONE, Visit
from tests.conftest import EnrolledClinic, RecordingDoorbell, referral_json
from tests.ops.notice_sinks import MailSink, mail_sink  # noqa: F401 - the SMTP sink fixture
from tests.patient_web.live_server import LiveServer, free_port

EMAIL = "kari.nordmann@example.no"

TEXTS: dict[str, dict[str, str]] = {
    "nb": {
        "locale": "nb-NO",
        "link": "Mistet lenken?",
        "rights": "Dine henvendelser og rettigheter",
        "email_error": "Skriv en gyldig e-postadresse",
        "send_email": "Send koden på e-post",
        "code": "Skriv inn koden",
        "refused": "Koden stemmer ikke. Sjekk sifrene og prøv igjen.",
        "continue": "Fortsett",
        "requests": "Dine henvendelser",
        "correct": "Rett kontaktopplysninger",
        "save": "Lagre rettingene",
        "corrected": "Kontaktopplysningene dine er rettet",
        "withdraw": "Trekk tilbake samtykket",
        "confirm_withdraw": "Ja, trekk tilbake samtykket",
        "withdrawn": "Samtykket er trukket tilbake",
        "erase": "Slett nå",
        "remains": "uten noen person i den",
        "confirm_erase": "Ja, slett nå",
        "erased": "Henvendelsen er slettet",
        "download": "Last ned (JSON)",
        "sign_out": "Logg ut",
        "signed_out": "Du er logget ut",
        "received": "Mottatt av klinikken",
    },
    "en": {
        "locale": "en-GB",
        "link": "Lost your link?",
        "rights": "Your requests and your rights",
        "email_error": "Write a valid e-mail address",
        "send_email": "Send the code by e-mail",
        "code": "Enter the code",
        "refused": "The code is not right. Check the digits and try again.",
        "continue": "Continue",
        "requests": "Your requests",
        "correct": "Correct contact details",
        "save": "Save the corrections",
        "corrected": "Your contact details have been corrected",
        "withdraw": "Withdraw consent",
        "confirm_withdraw": "Yes, withdraw consent",
        "withdrawn": "Consent has been withdrawn",
        "erase": "Erase now",
        "remains": "with no person in it",
        "confirm_erase": "Yes, erase now",
        "erased": "The request has been erased",
        "download": "Download (JSON)",
        "sign_out": "Sign out",
        "signed_out": "You are signed out",
        "received": "Received by the clinic",
    },
}


@pytest.fixture
def rights_live(
    settings: Settings,
    named_clinics: dict[str, EnrolledClinic],
    mail_sink: MailSink,  # noqa: F811
) -> Iterator[LiveServer]:
    port = free_port()
    app = create_app(
        msgspec.structs.replace(
            settings, public_url=f"http://127.0.0.1:{port}", submit_rate=100, smtp_url=mail_sink.url
        ),
        doorbell_factory=lambda s: RecordingDoorbell(),
    )
    server = LiveServer(app, port=port).start()
    yield server
    server.stop()


async def _submitted(live: LiveServer, slugs: list[str]) -> str:
    async with httpx.AsyncClient(base_url=live.url) as client:
        response = await client.post("/api/v1/referrals", json=referral_json(slugs, email=EMAIL))
    assert response.status_code == 201, response.text
    reference: str = response.json()["reference"]
    return reference


async def _acknowledged(broker: BrokerContext, reference: str, slug: str) -> None:
    referral_id: uuid.UUID = await broker.pool.fetchval("SELECT id FROM referrals WHERE reference = $1", reference)
    await dispatch.dispatch_referral(broker, referral_id)
    async with broker.pool.acquire() as conn, conn.transaction():
        clinic_id, delivery_id = await conn.fetchrow(
            """SELECT c.id, d.id FROM deliveries d JOIN clinics c ON c.id = d.clinic_id
               WHERE d.referral_id = $1 AND c.slug = $2""",
            referral_id,
            slug,
        )
        await deliveries.acknowledge(conn, clinic_id, [delivery_id], broker.clock())


def _code(sink: MailSink) -> str:
    body = sink.messages[-1].get_payload(decode=True)
    assert isinstance(body, bytes)
    match = re.search(r"\b(\d{6})\b", body.decode())
    assert match
    return match.group(1)


@pytest.mark.parametrize("lang", ["nb", "en"])
async def test_patient_without_the_link_finds_corrects_withdraws_erases_and_signs_out(
    browser: Browser,
    rights_live: LiveServer,
    broker: BrokerContext,
    mail_sink: MailSink,  # noqa: F811
    tmp_path: Path,
    lang: str,
) -> None:
    await broker.pool.execute("TRUNCATE rights_codes")
    text = TEXTS[lang]
    live = rights_live
    first = await _submitted(live, ["fysio-oslo", "psyk-oslo"])
    second = await _submitted(live, ["hud-bergen"])
    await _acknowledged(broker, first, "fysio-oslo")

    context = await browser.new_context(locale=text["locale"], viewport=PHONE, accept_downloads=True)
    page = await context.new_page()
    visit = Visit(page, live.url, f"rights-{lang}")
    try:
        # 1. From the start page to the rights page.
        await page.goto(live.url + "/")
        await page.get_by_role("link", name=re.compile(text["link"])).click()
        await expect(page.locator("h1")).to_have_text(text["rights"])
        await visit.check("start")

        # 2. A mistyped address: the message at the field, the text kept.
        await page.fill("#f-email", "kari.nordmann@")
        await page.get_by_role("button", name=text["send_email"]).click()
        await expect(page.locator("#f-email-error")).to_contain_text(text["email_error"])
        await expect(page.locator("#f-email")).to_have_value("kari.nordmann@")
        assert await page.evaluate("document.activeElement.classList.contains('error-summary')")
        await visit.check("mistyped")

        # 3. The right address: the code page; nothing personal in its URL.
        await page.fill("#f-email", EMAIL)
        await page.get_by_role("button", name=text["send_email"]).click()
        await expect(page.locator("h1")).to_have_text(text["code"])
        assert "@" not in page.url and "kari" not in page.url
        await visit.check("code")

        # 4. A wrong code, then the right one from the e-mail.
        code = _code(mail_sink)
        await page.fill("#f-code", "000000" if code != "000000" else "111111")
        await page.get_by_role("button", name=text["continue"]).click()
        await expect(page.locator("#f-code-error")).to_contain_text(text["refused"])
        await visit.check("wrong-code")
        await page.fill("#f-code", code)
        await page.get_by_role("button", name=text["continue"]).click()
        await expect(page.locator("h1")).to_have_text(text["requests"])
        assert page.url == live.url + "/rights/requests"
        assert code not in page.url
        cards = page.locator(".rights-referral")
        await expect(cards).to_have_count(2)
        first_card = cards.filter(has_text=first)
        await expect(first_card).to_contain_text(CLINIC_NAMES["fysio-oslo"])
        await expect(first_card).to_contain_text(text["received"])
        cookies = {c["name"]: c for c in await context.cookies()}
        session = cookies["__Host-rights"]
        assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict"
        await visit.check("requests")

        # 5. Download everything as JSON.
        async with page.expect_download() as download_info:
            await page.get_by_role("link", name=text["download"]).click()
        download = await download_info.value
        saved = tmp_path / download.suggested_filename
        await download.save_as(saved)
        exported = json.loads(saved.read_text())
        assert {r["reference"] for r in exported["referrals"]} == {first, second}
        assert all(r["contact_details"]["email"] == EMAIL for r in exported["referrals"])

        # 6. Correct the phone number of the first request.
        await first_card.get_by_role("button", name=re.compile(text["correct"])).click()
        await expect(page.locator("#f-phone")).to_have_value("+47 41 23 45 67")
        await visit.check("correct")
        await page.fill("#f-phone", "987 65 432")
        await page.get_by_role("button", name=text["save"]).click()
        await expect(page.locator(".confirmation h2")).to_have_text(text["corrected"])
        await visit.check("corrected")

        # 7. Withdraw consent to the first, after a confirm step.
        await cards.filter(has_text=first).get_by_role("button", name=re.compile(text["withdraw"])).click()
        await expect(page.locator("main")).to_contain_text(CLINIC_NAMES["psyk-oslo"])
        await visit.check("confirm-withdraw")
        await page.get_by_role("button", name=text["confirm_withdraw"]).click()
        await expect(page.locator(".confirmation h2")).to_have_text(text["withdrawn"])
        await visit.check("withdrawn")

        # 8. Erase the second now: the confirm step says what remains; afterwards it is gone from the list.
        await cards.filter(has_text=second).get_by_role("button", name=re.compile(text["erase"])).click()
        await expect(page.locator("main")).to_contain_text(text["remains"])
        await visit.check("confirm-erase")
        await page.get_by_role("button", name=text["confirm_erase"]).click()
        await expect(page.locator(".confirmation h2")).to_have_text(text["erased"])
        await expect(page.locator(".rights-referral")).to_have_count(1)
        await visit.check("erased")
        assert await broker.pool.fetchval("SELECT count(*) FROM referrals WHERE erased_at IS NOT NULL") == 1

        # 9. Sign out; the list is no longer reachable.
        await page.get_by_role("button", name=text["sign_out"]).click()
        await expect(page.locator("main")).to_contain_text(text["signed_out"])
        await visit.check("signed-out")
        await page.goto(live.url + "/rights/requests")
        await expect(page.locator("h1")).to_have_text(text["rights"])
    finally:
        await context.close()
