"""More of issue 22's part 2 walked in Chromium, nb and en, photographed at phone and desktop width and
checked with axe-core at each step:

- item 8: five wrong codes use the code up; the right one then says so and offers a new code, which works;
- item 9: the export as a readable page, which prints without the site's header and footer;
- item 7: after erasure the manage link says the request was erased on that day;
- item 11: an operator at 390 px: no overflow; suspending asks first and names the clinic; a used TOTP code is
  told apart from a wrong one.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx
import msgspec
import pytest
from playwright.async_api import Browser, Page, expect

from referral_broker.services.context import BrokerContext
from referral_broker.services.settings import Settings
from referral_broker.web.app import create_app
from referral_broker.web.i18n import Translator
from tests.browser.conftest import CLINIC_NAMES, DESKTOP, PHONE, Visit, assert_accessible, screenshots
from tests.browser.test_rights_journey import EMAIL, TEXTS, _code, rights_live  # noqa: F401 - a fixture
from tests.conftest import EnrolledClinic, RecordingDoorbell, referral_json
from tests.ops.conftest import PASSWORD, code_at, make_account
from tests.ops.notice_sinks import MailSink, mail_sink  # noqa: F401 - the SMTP sink fixture
from tests.patient_web.live_server import LiveServer, free_port

MORE = {
    "nb": {
        "spent": "Denne koden er brukt opp",
        "new_code": "Be om en ny kode",
        "print_page": "Se det samme på en side du kan skrive ut",
        "printed": "Alt vi har om deg",
        "erased": "Denne henvendelsen ble slettet",
    },
    "en": {
        "spent": "This code is used up",
        "new_code": "Ask for a new code",
        "print_page": "See the same on a page you can print",
        "printed": "Everything we hold about you",
        "erased": "This request was erased on",
    },
}


async def _ask_for_code(page: Page, text: dict[str, str]) -> None:
    await page.fill("#f-email", EMAIL)
    await page.get_by_role("button", name=text["send_email"]).click()
    await expect(page.locator("h1")).to_have_text(text["code"])


async def _enter(page: Page, code: str) -> None:
    await page.fill("#f-code", code)
    await page.locator("#code-button").click()


@pytest.mark.parametrize("lang", ["nb", "en"])
async def test_a_used_up_code_offers_a_new_one_the_export_prints_and_an_erased_link_says_so(
    browser: Browser,
    rights_live: LiveServer,  # noqa: F811
    broker: BrokerContext,
    mail_sink: MailSink,  # noqa: F811
    lang: str,
) -> None:
    await broker.pool.execute("TRUNCATE rights_codes")
    text, more = TEXTS[lang], MORE[lang]
    live = rights_live
    async with httpx.AsyncClient(base_url=live.url) as client:
        answer = await client.post("/api/v1/referrals", json=referral_json(["fysio-oslo"], email=EMAIL))
    assert answer.status_code == 201, answer.text
    reference, manage_url = answer.json()["reference"], answer.json()["manage_url"]

    context = await browser.new_context(locale=text["locale"], viewport=PHONE)
    page = await context.new_page()
    visit = Visit(page, live.url, f"used-up-{lang}")
    try:
        # Item 8: five wrong codes, then the right digits: "used up", and a way to a new code.
        await page.goto(live.url + "/rights")
        await _ask_for_code(page, text)
        right = _code(mail_sink)
        wrong = f"{(int(right) + 1) % 1_000_000:06d}"
        for _ in range(4):
            await _enter(page, wrong)
            await expect(page.locator("#f-code-error")).to_contain_text(text["refused"])
        await _enter(page, wrong)
        await expect(page.locator(".error-summary h2")).to_have_text(more["spent"])
        await expect(page.locator("#f-code")).to_have_count(0)
        await visit.check("used-up")
        await page.get_by_role("link", name=more["new_code"]).click()
        await expect(page.locator("h1")).to_have_text(text["rights"])
        await _ask_for_code(page, text)
        await _enter(page, _code(mail_sink))
        await expect(page.locator("h1")).to_have_text(text["requests"])

        # Item 9: the same document as a page to read and print; the JSON download is still there.
        await expect(page.get_by_role("link", name=text["download"])).to_be_visible()
        await page.get_by_role("link", name=more["print_page"]).click()
        await expect(page.locator("h1")).to_have_text(more["printed"])
        main = page.locator("main")
        for shown in (reference, "Kari Nordmann", EMAIL, CLINIC_NAMES["fysio-oslo"]):
            await expect(main).to_contain_text(shown)
        await expect(main).to_contain_text("17. mai 1990" if lang == "nb" else "17 May 1990")
        await visit.check("export-page")
        await page.emulate_media(media="print")
        await expect(page.locator(".site-header")).to_be_hidden()
        await expect(page.locator(".site-footer")).to_be_hidden()
        await expect(page.locator("h1")).to_be_visible()
        await screenshots(page, f"used-up-{lang}-export-printed")
        await page.emulate_media(media="screen")

        # Item 7: erase, then the manage link says when, and nothing more.
        await page.goto(live.url + "/rights/requests")
        await page.get_by_role("button", name=re.compile(text["erase"])).click()
        await page.get_by_role("button", name=text["confirm_erase"]).click()
        await expect(page.locator(".confirmation h2")).to_have_text(text["erased"])
        response = await page.goto(manage_url)
        assert response is not None and response.status == 410
        day = Translator(lang).day(datetime.now(UTC))
        await expect(page.locator("main")).to_contain_text(f"{more['erased']} {day}.")
        await expect(page.locator("main")).not_to_contain_text(reference)
        await visit.check("erased-link")
    finally:
        await context.close()


@pytest.fixture
def ops_live(settings: Settings, named_clinics: dict[str, EnrolledClinic]) -> LiveServer:
    port = free_port()
    app = create_app(
        msgspec.structs.replace(settings, public_url=f"http://127.0.0.1:{port}"),
        doorbell_factory=lambda s: RecordingDoorbell(),
    )
    return LiveServer(app, port=port).start()


OPS = {
    "nb": {
        "username": "Brukernavn",
        "password": "Passord",
        "code": "Kode fra autentiseringsappen",
        "sign_in": "Logg inn",
        "suspend": "Suspender",
        "confirm": "Ja, suspender",
        "suspended": "er suspendert",
        "used": "Denne koden er allerede brukt",
        "sign_out": "Logg ut",
    },
    "en": {
        "username": "Username",
        "password": "Password",
        "code": "Code from your authenticator",
        "sign_in": "Sign in",
        "suspend": "Suspend",
        "confirm": "Yes, suspend",
        "suspended": "is suspended",
        "used": "This code was already used",
        "sign_out": "Sign out",
    },
}


async def _sign_in(page: Page, url: str, words: dict[str, str], code: str) -> None:
    await page.goto(f"{url}/ops/login")
    await page.get_by_label(words["username"]).fill("olga")
    await page.get_by_label(words["password"]).fill(PASSWORD)
    await page.get_by_label(words["code"]).fill(code)
    await page.get_by_role("button", name=words["sign_in"]).click()


async def _overflow(page: Page) -> tuple[int, list[str]]:
    """The page's width, and what sticks out past the viewport (to say what to fix when the width is wrong)."""
    width: int = await page.evaluate("document.documentElement.scrollWidth")
    wide: list[str] = await page.evaluate(
        """Array.from(document.querySelectorAll('body *')).filter(e => e.getBoundingClientRect().right >
           window.innerWidth + 1).slice(0, 8).map(e => e.tagName + '.' + e.className)"""
    )
    return width, wide


@pytest.mark.parametrize("lang", ["nb", "en"])
async def test_an_operator_on_a_phone_suspends_with_a_confirmation_and_is_told_a_code_was_used(
    browser: Browser, ops_live: LiveServer, broker: BrokerContext, lang: str
) -> None:
    words = OPS[lang]
    account = await make_account(broker, "olga")
    async with httpx.AsyncClient(base_url=ops_live.url) as client:
        assert (await client.post("/api/v1/referrals", json=referral_json(["fysio-oslo"]))).status_code == 201
    context = await browser.new_context(locale="nb-NO" if lang == "nb" else "en-GB", viewport=PHONE)
    page = await context.new_page()
    try:
        code = code_at(account, datetime.now(UTC))
        await _sign_in(page, ops_live.url, words, code)
        await expect(page).to_have_url(f"{ops_live.url}/ops")
        await expect(page.locator("svg.chart-svg")).to_have_count(2)
        for viewport in (PHONE, DESKTOP):
            await page.set_viewport_size(viewport)  # type: ignore[arg-type]
            width, wide = await _overflow(page)
            assert width <= viewport["width"], (viewport, wide)  # was 444 px at 390
        await page.set_viewport_size(PHONE)  # type: ignore[arg-type]
        await assert_accessible(page, f"ops dashboard {lang}")
        await screenshots(page, f"ops-{lang}-dashboard")

        row = page.get_by_role("row", name=re.compile("^fysio-oslo"))
        await row.get_by_role("button", name=words["suspend"]).click()
        name = CLINIC_NAMES["fysio-oslo"]
        await expect(page.locator("h1")).to_contain_text(name)
        assert await broker.pool.fetchval("SELECT status FROM clinics WHERE slug = 'fysio-oslo'") == "active"
        await assert_accessible(page, f"ops confirm suspend {lang}")
        await screenshots(page, f"ops-{lang}-confirm-suspend")
        await page.get_by_role("button", name=re.compile(words["confirm"])).click()
        await expect(page.locator(".message.done")).to_contain_text(f"{name} {words['suspended']}")
        assert await broker.pool.fetchval("SELECT status FROM clinics WHERE slug = 'fysio-oslo'") == "suspended"
        await screenshots(page, f"ops-{lang}-suspended")

        # The same code again, within its window: said to be used, not "wrong".
        await page.get_by_role("button", name=words["sign_out"]).click()
        await _sign_in(page, ops_live.url, words, code)
        await expect(page.locator("main")).to_contain_text(words["used"])
        await assert_accessible(page, f"ops code used {lang}")
        await screenshots(page, f"ops-{lang}-code-used")
    finally:
        await context.close()
        ops_live.stop()
