"""The privacy statement in a real browser (issue 22 item 1): reached from the footer of the start page, in bokmål,
English and Nynorsk, axe-clean, nothing from another origin; screenshots at phone and desktop widths. The legal-hold
page for operators the same way."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, expect

from referral_broker.services.context import BrokerContext
from tests.browser.conftest import DESKTOP, PHONE, Visit
from tests.ops.conftest import PASSWORD, code_at, make_account
from tests.patient_web.live_server import LiveServer

TITLES = {"nb": "Personvernerklæring", "en": "Privacy statement", "nn": "Personvernerklæring"}


@pytest.mark.parametrize("lang", ["nb", "en", "nn"])
async def test_the_statement_is_one_tap_from_every_page_and_reads_well_on_a_phone(
    browser: Browser, live: LiveServer, lang: str
) -> None:
    context = await browser.new_context(viewport=PHONE)
    page = await context.new_page()
    visit = Visit(page, live.url, f"privacy-{lang}")
    try:
        await page.goto(f"{live.url}/?lang={lang}")
        await page.locator("footer").get_by_role("link", name=TITLES[lang]).click()
        await expect(page.locator("h1")).to_have_text(TITLES[lang])
        assert page.url == f"{live.url}/personvern"
        # Nothing wider than the phone: the facts and cookies fold into one column.
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], width
        await expect(page.locator("dt code").first).to_be_visible()
        await visit.check("statement")
        await expect(page.locator('main a[href="/rights"]')).to_be_visible()
    finally:
        await context.close()


async def test_the_legal_hold_page_is_accessible(browser: Browser, live: LiveServer, broker: BrokerContext) -> None:
    import datetime as dt

    operator = await make_account(broker, "olga")
    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()
    visit = Visit(page, live.url, "ops-holds")
    try:
        await page.goto(f"{live.url}/ops/login")
        await page.fill("#username", operator.username)
        await page.fill("#password", PASSWORD)
        await page.fill("#code", code_at(operator, dt.datetime.now(dt.UTC)))
        await page.get_by_role("button").last.click()
        await page.goto(f"{live.url}/ops/holds")
        await page.fill("#reference", "RB-00000-00000")
        await page.select_option("#reason", "legal_claim")
        await page.fill("#note", "sak 26-045117TVI")
        await page.get_by_role("button", name="Place hold").click()
        await expect(page.locator(".message.error")).to_contain_text("no referral has the reference RB-00000-00000")
        await visit.check("refused")
        await page.set_viewport_size(PHONE)  # type: ignore[arg-type]
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], width  # the form folds; nothing sticks out on a phone
    finally:
        await context.close()
