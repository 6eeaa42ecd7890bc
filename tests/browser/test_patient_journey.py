"""A patient's whole journey in a real browser, in bokmål and in English: find and filter clinics, choose
with the keyboard, make mistakes, correct them, send, read the receipt, follow the manage link, withdraw.

Each step is checked with axe-core (no serious or critical violation), for requests to other origins and
for console complaints (a CSP violation shows there), and photographed at phone and desktop width.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from referral_broker.services import dispatch
from referral_broker.services.context import BrokerContext
from referral_broker.store import deliveries
from tests.browser.conftest import CLINIC_NAMES, PHONE, Visit
from tests.patient_web.live_server import LiveServer

TEXTS: dict[str, dict[str, str]] = {
    "nb": {
        "locale": "nb-NO",
        "home": "Finn en klinikk",
        "count_one": "1 klinikk passer",
        "physio": "Fysioterapi",
        "form": "Send henvendelse",
        "errors": "Noe må rettes før henvendelsen kan sendes",
        "email_error": "Skriv en gyldig e-postadresse",
        "date_error": "Skriv fødselsdatoen som dd.mm.åååå",
        "consent_error": "Du må krysse av for samtykke",
        "receipt": "Henvendelsen er sendt",
        "retention": "fem måneder etter at henvendelsen er sendt",
        "received": "Mottatt av klinikken",
        "inbox": "Levert til klinikkens innboks",
        "withdraw": "Trekk tilbake samtykket",
        "withdrawn": "Samtykket er trukket tilbake",
        "confirm": "Trekke tilbake samtykket?",
        "told": "får beskjed om at du trakk tilbake samtykket",
        "told_done": "Disse klinikkene får beskjed om at du trakk tilbake samtykket",
        "not_found": "Vi finner ikke denne siden",
        "switch": "English",
    },
    "en": {
        "locale": "en-GB",
        "home": "Find a clinic",
        "count_one": "1 clinic matches",
        "physio": "Physiotherapy",
        "form": "Send your request",
        "errors": "Something must be fixed before the request can be sent",
        "email_error": "Write a valid e-mail address",
        "date_error": "Write your date of birth as dd.mm.yyyy",
        "consent_error": "Tick the consent box",
        "receipt": "Your request has been sent",
        "retention": "five months after the request is sent",
        "received": "Received by the clinic",
        "inbox": "Delivered to the clinic's inbox",
        "withdraw": "Withdraw consent",
        "withdrawn": "Consent has been withdrawn",
        "confirm": "Withdraw consent?",
        "told": "are told that you withdrew consent",
        "told_done": "These clinics are told that you withdrew consent",
        "not_found": "We cannot find this page",
        "switch": "Norsk",
    },
}


async def _tab_to(page: Page, element_id: str, limit: int = 60) -> None:
    """Press Tab until the element has focus, as a keyboard user would."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement && document.activeElement.id") == element_id:
            return
    raise AssertionError(f"#{element_id} never received focus from the keyboard")


async def _dispatch_and_acknowledge(broker: BrokerContext, reference: str, acknowledged_slug: str) -> None:
    """What the worker and one clinic's tool would do meanwhile: make both available, one clinic collects."""
    referral_id: uuid.UUID = await broker.pool.fetchval("SELECT id FROM referrals WHERE reference = $1", reference)
    await dispatch.dispatch_referral(broker, referral_id)
    async with broker.pool.acquire() as conn, conn.transaction():
        clinic_id, delivery_id = await conn.fetchrow(
            """SELECT c.id, d.id FROM deliveries d JOIN clinics c ON c.id = d.clinic_id
               WHERE d.referral_id = $1 AND c.slug = $2""",
            referral_id,
            acknowledged_slug,
        )
        await deliveries.acknowledge(conn, clinic_id, [delivery_id], broker.clock())


@pytest.mark.parametrize("lang", ["nb", "en"])
async def test_patient_finds_clinics_sends_follows_and_withdraws(
    browser: Browser, live: LiveServer, broker: BrokerContext, lang: str
) -> None:
    text = TEXTS[lang]
    context = await browser.new_context(locale=text["locale"], viewport=PHONE)  # Accept-Language picks the language
    page = await context.new_page()
    visit = Visit(page, live.url, lang)
    try:
        # 1. The start page, in the browser's language, with a skip link as the first stop of the keyboard.
        await page.goto(live.url + "/")
        await expect(page.locator("html")).to_have_attribute("lang", lang)
        await expect(page.locator("h1")).to_have_text(text["home"])
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.className") == "skip-link"
        await visit.check("home")

        # 2. Filter by what they treat and by city (a plain GET form).
        await page.select_option("#filter-category", "physiotherapy")
        await page.select_option("#filter-city", "Oslo")
        await page.get_by_role("button", name=re.compile("Vis klinikker|Show clinics")).click()
        await expect(page.locator("#result-count")).to_have_text(text["count_one"])
        await expect(page.locator(".clinic__name")).to_have_text([CLINIC_NAMES["fysio-oslo"]])
        await expect(page.locator(".clinic__about")).to_contain_text(text["physio"])
        await visit.check("filtered")

        # 3. Clear the filter, then choose two clinics with the keyboard only.
        await page.goto(live.url + "/")
        await _tab_to(page, "clinic-fysio-oslo")
        await page.keyboard.press("Space")
        await _tab_to(page, "clinic-psyk-oslo")
        await page.keyboard.press("Space")
        await visit.check("chosen")
        await page.keyboard.press("Tab")  # to the continue button
        await page.keyboard.press("Enter")
        await expect(page.locator("h1")).to_have_text(text["form"])
        consent = page.locator("fieldset.consent")
        await expect(consent).to_contain_text(CLINIC_NAMES["fysio-oslo"])
        await expect(consent).to_contain_text(CLINIC_NAMES["psyk-oslo"])
        await expect(page.locator("#f-consent")).not_to_be_checked()
        await visit.check("form")

        # 4. Mistakes: a half e-mail, a date as words, no consent.
        await page.fill("#f-description", "Vondt i kneet etter løping, særlig i trapper.")
        await page.fill("#f-name", "Kari Nordmann")
        await page.fill("#f-email", "kari@")
        await page.fill("#f-phone", "412 34 567")
        await page.fill("#f-birth_date", "17. mai")
        await page.get_by_role("button", name=re.compile("Send")).click()
        summary = page.locator(".error-summary")
        await expect(summary).to_contain_text(text["errors"])
        await expect(page.locator("#f-email-error")).to_contain_text(text["email_error"])
        await expect(page.locator("#f-birth_date-error")).to_contain_text(text["date_error"])
        await expect(page.locator("#f-consent-error")).to_contain_text(text["consent_error"])
        await expect(page.locator("#f-name")).to_have_value("Kari Nordmann")  # kept as typed
        await expect(page.locator("#f-description")).to_have_value("Vondt i kneet etter løping, særlig i trapper.")
        assert await page.evaluate("document.activeElement.classList.contains('error-summary')")
        await visit.check("mistakes")

        # 5. Follow the summary's link to the field, correct everything, tick consent with the keyboard, send.
        await summary.get_by_role("link").first.click()
        assert await page.evaluate("document.activeElement.id") == "f-email"
        await page.fill("#f-email", "kari.nordmann@example.no")
        await page.fill("#f-birth_date", "17.05.1990")
        await page.focus("#f-consent")
        await page.keyboard.press("Space")
        await expect(page.locator("#f-consent")).to_be_checked()
        await page.keyboard.press("Tab")  # past the hidden honeypot, straight to the button
        assert await page.evaluate("document.activeElement.type") == "submit"
        await page.keyboard.press("Enter")

        # 6. The receipt.
        await expect(page.locator("h1")).to_have_text(text["receipt"])
        reference = (await page.locator(".reference strong").inner_text()).strip()
        assert re.fullmatch(r"RB-[0-9A-Z]{5}-[0-9A-Z]{5}", reference)
        await expect(page.locator(".facts")).to_contain_text(CLINIC_NAMES["psyk-oslo"])
        await expect(page.locator("main")).to_contain_text(text["retention"])
        manage_link = await page.locator(".manage-link a").get_attribute("href")
        assert manage_link and manage_link.startswith(live.url + "/manage/")
        await visit.check("receipt")

        # 7. Meanwhile both are made available and one clinic collects its copy; the manage link shows it.
        await _dispatch_and_acknowledge(broker, reference, "fysio-oslo")
        await page.goto(manage_link)
        statuses = page.locator(".status")
        await expect(statuses.filter(has_text=CLINIC_NAMES["fysio-oslo"])).to_contain_text(text["received"])
        await expect(statuses.filter(has_text=CLINIC_NAMES["psyk-oslo"])).to_contain_text(text["inbox"])
        await visit.check("manage")

        # 8. Withdraw with the keyboard, after a confirm step that says what stops and who is told.
        await expect(page.locator(".withdraw")).to_contain_text(text["told"])
        await _tab_to(page, "withdraw-button")
        await page.keyboard.press("Enter")
        await expect(page.locator("h1")).to_have_text(text["confirm"])
        await expect(page.locator("main")).to_contain_text(text["told"])
        await visit.check("confirm-withdrawal")
        await _tab_to(page, "confirm-button")
        await page.keyboard.press("Enter")
        await expect(page.locator(".confirmation h2")).to_have_text(text["withdrawn"])
        await expect(page.locator(".confirmation")).to_contain_text(CLINIC_NAMES["psyk-oslo"])
        await expect(page.locator(".confirmation")).to_contain_text(text["told_done"])
        await expect(page.get_by_role("button", name=text["withdraw"])).to_have_count(0)
        await visit.check("withdrawn")
        states = await broker.pool.fetch(
            """SELECT c.slug, d.status, d.envelope IS NULL AS dropped FROM deliveries d
               JOIN clinics c ON c.id = d.clinic_id JOIN referrals r ON r.id = d.referral_id
               WHERE r.reference = $1 ORDER BY c.slug""",
            reference,
        )
        assert [(r["slug"], r["status"], r["dropped"]) for r in states] == [
            ("fysio-oslo", "acknowledged", True),
            ("psyk-oslo", "cancelled", True),
        ]

        # 9. The manage page again, and the language switch.
        await page.goto(manage_link)
        await page.get_by_role("link", name=re.compile(text["switch"] + "|Read this page|Les denne siden")).click()
        await expect(page.locator("html")).to_have_attribute("lang", "en" if lang == "nb" else "nb")
        await visit.check("switched")

        # 10. A wrong manage link.
        await page.goto(manage_link[:-3] + "xyz")
        await expect(page.locator("h1")).to_have_text(TEXTS["en" if lang == "nb" else "nb"]["not_found"])
        await visit.check("not-found")
    finally:
        await context.close()


async def test_chosen_clinics_survive_a_trip_back_from_the_form(
    browser: Browser, live: LiveServer, broker: BrokerContext
) -> None:
    context = await browser.new_context(locale="nb-NO", viewport=PHONE)
    page: Any = await context.new_page()
    visit = Visit(page, live.url, "nb-change")
    try:
        await page.goto(live.url + "/send")  # nothing chosen
        await expect(page.locator(".error-summary")).to_contain_text("Velg minst én klinikk")
        await visit.check("nothing-chosen")
        await page.check("#clinic-hud-bergen")
        await page.get_by_role("button", name="Gå videre til skjemaet").click()
        await page.get_by_role("link", name="Endre valg av klinikker").click()
        await expect(page.locator("#clinic-hud-bergen")).to_be_checked()
    finally:
        await context.close()
