"""The rough edges of a new patient's journey (issue 22, part 2), walked in a real Chromium, in bokmål and
English, photographed at phone and desktop width and checked with axe-core at each step.

- item 4: mistakes do not use up the accepted submissions, and a refusal by the limit shows the form again with
  what was typed;
- item 5: Back from the receipt and Send again shows the first receipt and makes no second referral.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import msgspec
import pytest
from playwright.async_api import Browser, Page, expect

from referral_broker.services.context import BrokerContext
from referral_broker.services.settings import Settings
from referral_broker.web.app import create_app
from tests.browser.conftest import DESKTOP, PHONE, Visit
from tests.conftest import EnrolledClinic, RecordingDoorbell
from tests.patient_web.live_server import LiveServer, free_port

TEXTS = {
    "nb": {
        "locale": "nb-NO",
        "form": "Send henvendelse",
        "receipt": "Henvendelsen er sendt",
        "repeated": "allerede sendt",
        "limit": "Vent et minutt før du sender igjen",
        "kept": "Det du skrev, står fortsatt i skjemaet under",
        "email_error": "Skriv en gyldig e-postadresse",
    },
    "en": {
        "locale": "en-GB",
        "form": "Send your request",
        "receipt": "Your request has been sent",
        "repeated": "already been sent",
        "limit": "Please wait a minute before sending again",
        "kept": "What you typed is still in the form below",
        "email_error": "Write a valid e-mail address",
    },
}
DESCRIPTION = "Vondt i kneet etter løping, særlig i trapper."


@pytest.fixture
def limited_live(settings: Settings, named_clinics: dict[str, EnrolledClinic]) -> Iterator[LiveServer]:
    """The real app over TCP with a small accepted limit (2 a minute) and the default looser refused one."""
    port = free_port()
    app = create_app(
        msgspec.structs.replace(settings, public_url=f"http://127.0.0.1:{port}", submit_rate=2),
        doorbell_factory=lambda s: RecordingDoorbell(),
    )
    server = LiveServer(app, port=port).start()
    yield server
    server.stop()


async def _fill(page: Page, *, email: str = "kari.nordmann@example.no", description: str = DESCRIPTION) -> None:
    await page.fill("#f-description", description)
    await page.fill("#f-name", "Kari Nordmann")
    await page.fill("#f-email", email)
    await page.fill("#f-phone", "412 34 567")
    await page.fill("#f-birth_date", "17.05.1990")
    await page.check("#f-consent")


async def _send(page: Page) -> None:
    await page.locator("form[action='/send'] button[type=submit]").click()


async def _referrals(broker: BrokerContext) -> int:
    return int(await broker.pool.fetchval("SELECT count(*) FROM referrals"))


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
@pytest.mark.parametrize("lang", ["nb", "en"])
async def test_back_and_send_again_makes_no_second_referral(
    browser: Browser, live: LiveServer, broker: BrokerContext, lang: str, viewport: dict[str, int]
) -> None:
    text = TEXTS[lang]
    context = await browser.new_context(locale=text["locale"], viewport=viewport)  # type: ignore[arg-type]
    page = await context.new_page()
    visit = Visit(page, live.url, f"back-{lang}-{viewport['width']}")
    try:
        await page.goto(live.url + "/send?clinic=fysio-oslo")
        await expect(page.locator("h1")).to_have_text(text["form"])
        await _fill(page)
        await _send(page)
        await expect(page.locator("h1")).to_have_text(text["receipt"])
        first = (await page.locator(".reference strong").inner_text()).strip()
        first_link = await page.locator(".manage-link a").get_attribute("href")
        await visit.check("receipt")

        # Back: the browser shows the form it had, refilled with what was typed, and the same one-time key.
        await page.go_back()
        await expect(page.locator("h1")).to_have_text(text["form"])
        await expect(page.locator("#f-description")).to_have_value(DESCRIPTION)
        await expect(page.locator("#f-consent")).to_be_checked()
        await visit.check("back")

        # Send again: the first receipt, the same private link, and still one referral.
        await _send(page)
        await expect(page.locator("h1")).to_have_text(text["receipt"])
        await expect(page.locator(".confirmation .lead")).to_contain_text(text["repeated"])
        assert (await page.locator(".reference strong").inner_text()).strip() == first
        assert await page.locator(".manage-link a").get_attribute("href") == first_link
        await visit.check("sent-again")
        assert await _referrals(broker) == 1

        # On the manage page the withdraw button is not crowded by the link below it (WCAG 2.5.8: 24 px).
        assert first_link
        await page.goto(first_link)
        button = await page.locator("#withdraw-button").bounding_box()
        link = await page.locator(".more-requests a").bounding_box()
        assert button and link and link["y"] - (button["y"] + button["height"]) >= 24
        await visit.check("manage")

        # A fresh visit to the form (not Back) is a new request: another key, another referral.
        await page.goto(live.url + "/send?clinic=fysio-oslo")
        await _fill(page, description=DESCRIPTION + " Nå også i hofta.")
        await _send(page)
        await expect(page.locator(".confirmation .lead")).not_to_contain_text(text["repeated"])
        assert await _referrals(broker) == 2

        # Item 10: the receipt switches language without losing the private link (a form, not a link).
        second = (await page.locator(".reference strong").inner_text()).strip()
        second_link = await page.locator(".manage-link a").get_attribute("href")
        other = "en" if lang == "nb" else "nb"
        await page.locator(f".receipt-languages button[lang={other}]").click()
        await expect(page.locator("html")).to_have_attribute("lang", other)
        await expect(page.locator("h1")).to_have_text(TEXTS[other]["receipt"])
        assert (await page.locator(".reference strong").inner_text()).strip() == second
        assert await page.locator(".manage-link a").get_attribute("href") == second_link
        assert second_link and second_link.rsplit("/", 1)[1] not in page.url
        await visit.check("receipt-switched")
    finally:
        await context.close()


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
@pytest.mark.parametrize("lang", ["nb", "en"])
async def test_mistakes_do_not_lock_out_and_the_limit_keeps_what_was_typed(
    browser: Browser, limited_live: LiveServer, broker: BrokerContext, lang: str, viewport: dict[str, int]
) -> None:
    text = TEXTS[lang]
    live = limited_live
    context = await browser.new_context(locale=text["locale"], viewport=viewport)  # type: ignore[arg-type]
    page = await context.new_page()
    visit = Visit(page, live.url, f"limit-{lang}-{viewport['width']}")
    try:
        # Five typing mistakes in a row, then the corrected form goes through (the limit is two accepted).
        await page.goto(live.url + "/send?clinic=fysio-oslo")
        await _fill(page, email="kari@")
        for _ in range(5):
            await _send(page)
            await expect(page.locator("#f-email-error")).to_contain_text(text["email_error"])
        await page.fill("#f-email", "kari.nordmann@example.no")
        await _send(page)
        await expect(page.locator("h1")).to_have_text(text["receipt"])

        # A second request is accepted; the third in the same minute is refused with the form as typed.
        for n in (2, 3):
            await page.goto(live.url + "/send?clinic=fysio-oslo")
            await _fill(page, description=f"Henvendelse nummer {n}: {DESCRIPTION}")
            await _send(page)
        await expect(page.locator("h1")).to_have_text(text["form"])
        await expect(page.locator(".error-summary")).to_contain_text(text["limit"])
        await expect(page.locator(".error-summary")).to_contain_text(text["kept"])
        await expect(page.locator("#f-description")).to_have_value(f"Henvendelse nummer 3: {DESCRIPTION}")
        await expect(page.locator("#f-name")).to_have_value("Kari Nordmann")
        await expect(page.locator("#f-consent")).to_be_checked()
        assert not re.search(r"(?i)many requests|mange henvendelser på kort tid", await page.content())
        await visit.check("limited")
        assert await _referrals(broker) == 2
    finally:
        await context.close()
