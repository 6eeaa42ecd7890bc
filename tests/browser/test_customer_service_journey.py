"""Customer service in a real browser: a person writes to us in bokmål and in English (with a mistake first),
gets a reference; an operator signs in, opens the message, answers it by e-mail and closes it.

Each step is checked with axe-core (no serious or critical violation), for requests to other origins and for
CSP complaints, and photographed at 390 px and 1280 px (test-artifacts/screenshots/customer-service-*).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import msgspec
import pyotp
import pytest
from playwright.async_api import Browser, expect

from referral_broker.services import operators
from referral_broker.services.context import BrokerContext
from referral_broker.services.settings import Settings
from referral_broker.web.app import create_app
from tests.browser.conftest import DESKTOP, PHONE, Visit
from tests.conftest import RecordingDoorbell
from tests.ops.notice_sinks import MailSink, mail_sink  # noqa: F401 - the SMTP sink fixture
from tests.patient_web.live_server import LiveServer, free_port

PASSWORD = "correct horse battery staple"
TEXTS = {
    "nb": {
        "locale": "nb-NO",
        "title": "Kontakt oss",
        "message": "Meldingen din",
        "email": "E-postadresse for svar (valgfritt)",
        "about": "Referanse (valgfritt)",
        "send": "Send meldingen",
        "email_error": "Skriv e-postadressen slik",
        "receipt": "Meldingen er sendt",
        "question": "Hei! Jeg fikk ikke med telefonnummeret mitt.\nKan dere hjelpe meg å rette det?",
        "address": "kari@example.no",
    },
    "en": {
        "locale": "en-GB",
        "title": "Contact us",
        "message": "Your message",
        "email": "E-mail address for our answer (optional)",
        "about": "Reference (optional)",
        "send": "Send message",
        "email_error": "Write the e-mail address like this",
        "receipt": "Your message has been sent",
        "question": "Hello, how long do clinics usually take to answer?",
        "address": "ola@example.com",
    },
}


@pytest.fixture
def live_with_mail(settings: Settings, mail_sink: MailSink) -> Iterator[LiveServer]:  # noqa: F811
    port = free_port()
    app = create_app(
        msgspec.structs.replace(
            settings,
            public_url=f"http://127.0.0.1:{port}",
            smtp_url=mail_sink.url,
            mail_from="kundeservice@broker.test",
        ),
        doorbell_factory=lambda s: RecordingDoorbell(),
    )
    server = LiveServer(app, port=port).start()
    yield server
    server.stop()


async def _write_to_us(browser: Browser, live: LiveServer, lang: str) -> str:
    text = TEXTS[lang]
    context = await browser.new_context(locale=text["locale"], viewport=PHONE)
    page = await context.new_page()
    visit = Visit(page, live.url, f"customer-service-{lang}")
    try:
        await page.goto(f"{live.url}/kontakt")
        await expect(page.get_by_role("heading", level=1)).to_have_text(text["title"])
        await visit.check("form")
        await page.get_by_label(text["message"]).fill(text["question"])
        await page.get_by_label(text["email"]).fill(text["address"].replace("@", ""))  # a typo
        await page.get_by_label(text["about"]).fill("RB-7K2M9-Q4X8D")
        await page.get_by_role("button", name=text["send"]).click()
        await expect(page.get_by_role("alert")).to_contain_text(text["email_error"])
        await expect(page.get_by_label(text["message"])).to_have_value(text["question"])  # nothing typed is lost
        await visit.check("mistake")
        await page.get_by_label(text["email"]).fill(text["address"])
        await page.get_by_role("button", name=text["send"]).click()
        await expect(page.get_by_role("heading", level=1)).to_have_text(text["receipt"])
        reference = await page.locator(".reference strong").inner_text()
        assert re.fullmatch(r"KS-[0-9A-Z]{5}-[0-9A-Z]{5}", reference), reference
        await visit.check("receipt")
        return reference
    finally:
        await context.close()


async def test_a_person_writes_to_us_and_an_operator_answers_and_closes(
    browser: Browser,
    live_with_mail: LiveServer,
    broker: BrokerContext,
    mail_sink: MailSink,  # noqa: F811
) -> None:
    live = live_with_mail
    references = {lang: await _write_to_us(browser, live, lang) for lang in ("nb", "en")}
    made = await operators.create_operator(broker, "olga", "operator", PASSWORD, actor="test")

    context = await browser.new_context(locale="en-GB", viewport=DESKTOP)
    page = await context.new_page()
    visit = Visit(page, live.url, "customer-service-ops")
    try:
        await page.goto(f"{live.url}/ops/login")
        await page.get_by_label("Username").fill("olga")
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_label("Code from your authenticator").fill(pyotp.TOTP(made.totp_secret).now())
        await page.get_by_role("button", name="Sign in").click()
        await expect(page).to_have_url(f"{live.url}/ops")
        await page.get_by_role("link", name="Customer service").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Customer service")
        for reference in references.values():
            await expect(page.get_by_role("link", name=reference)).to_be_visible()
        await expect(page.get_by_text("kari@example.no")).to_have_count(0)  # the list shows no content
        await visit.check("list")

        await page.get_by_role("link", name=references["nb"]).click()
        await expect(page.get_by_text("Kan dere hjelpe meg å rette det?")).to_be_visible()
        await expect(page.get_by_text("kari@example.no")).to_be_visible()
        await visit.check("message")
        answer = "Hei Kari! Bruk «Dine rettigheter» og velg «Rett opplysningene».\nHilsen kundeservice"
        await page.get_by_label("Answer (sent by e-mail to the reply address)").fill(answer)
        await page.get_by_role("button", name="Send answer").click()
        await expect(page.get_by_role("status")).to_have_text("The answer was sent.")
        await expect(page.get_by_text("by olga")).to_be_visible()
        await visit.check("answered")
        await page.get_by_role("button", name="Close the message").click()
        await expect(page.get_by_role("status")).to_have_text("The message is closed.")
        await visit.check("closed")
    finally:
        await context.close()

    assert len(mail_sink.messages) == 1
    mail = mail_sink.messages[0]
    assert mail["To"] == "kari@example.no"
    assert mail["Subject"] == f"Svar fra kundeservice ({references['nb']})"
    body = mail.get_payload(decode=True).decode()
    assert "Bruk «Dine rettigheter»" in body and f"{live.url}/kontakt" in body
    events = await broker.pool.fetch(
        "SELECT action FROM audit_events WHERE action LIKE 'customer_message.%' ORDER BY id"
    )
    assert [e["action"] for e in events] == [
        "customer_message.read",
        "customer_message.answered",
        "customer_message.read",
        "customer_message.closed",
    ]
