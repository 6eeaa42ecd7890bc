"""The privacy statement (issue 22 item 1): what it states that the code decides is read from the code and the
running configuration — periods, age limit, controller, processors, cookies — so the page cannot drift from it;
every page links it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from referral_broker.services.context import BrokerContext
from referral_broker.services.settings import ConfigError, Settings
from tests.conftest import EnrolledClinic
from tests.ops.conftest import make_account, sign_in
from tests.ops.notice_sinks import MailSink, mail_sink  # noqa: F401 - the SMTP sink fixture
from tests.patient_web.conftest import ClientFactory, send_form
from tests.patient_web.test_rights_pages import _sign_in, no_codes_left  # noqa: F401 - fixture

SRC = Path(__file__).resolve().parents[2] / "src" / "referral_broker"
_SETTING = re.compile(r'<span data-setting="(\w+)">([^<]*)</span>')
PERIODS = {
    "retention_months",
    "rights_code_minutes",
    "rights_session_minutes",
    "customer_service_retention_days",
    "log_retention_days",
    "minimum_age",
}
CONTROLLER = {
    "controller_name": "Henvisning Norge AS",
    "controller_org_number": "912 345 678",
    "controller_address": "Storgata 1, 0155 Oslo",
    "controller_email": "personvern@henvisning.no",
    "processors": ("Driftspartner AS (servere, Norge)", "Postbud AS (e-post, EU)", "Tekst AS (SMS, Norge)"),
}


def stated(page: str) -> dict[str, str]:
    return dict(_SETTING.findall(page))


async def test_every_period_the_statement_gives_is_the_configured_one(make_client: ClientFactory) -> None:
    default = await make_client()
    page = (await default.get("/personvern")).text
    assert stated(page).keys() == PERIODS
    defaults = Settings(database_url="postgresql://x/y")
    assert stated(page) == {name: str(getattr(defaults, name)) for name in PERIODS}

    changed = {
        "retention_months": 7,
        "rights_code_minutes": 11,
        "rights_session_minutes": 23,
        "customer_service_retention_days": 45,
        "log_retention_days": 9,
        "minimum_age": 18,
    }
    client = await make_client(**changed)
    page = (await client.get("/personvern")).text
    assert stated(page) == {name: str(value) for name, value in changed.items()}
    text = re.sub(r"<[^>]+>", "", page)
    for sentence in (
        "Henvendelser: 7 måneder etter at de ble sendt til klinikkene",
        "de virker i 11 minutter",
        "den varer i høyst 23 minutter",
        "de slettes 45 dager etter at saken er avsluttet",
        "vi tar vare på dem i 9 dager",
        "Du må være minst 18 år",
    ):
        assert sentence in text, sentence
    english = re.sub(r"<[^>]+>", "", (await client.get("/personvern?lang=en")).text)
    assert "Requests: 7 months after they were sent to the clinics" in english
    assert "You must be at least 18 years old" in english

    ones = await make_client(**dict.fromkeys(changed, 1))  # one of each reads in the singular
    english = re.sub(r"<[^>]+>", "", (await ones.get("/personvern?lang=en")).text)
    for sentence in ("Requests: 1 month after", "work for 1 minute and", "at most 1 minute,", "deleted 1 day after",
                     "keep them for 1 day.", "at least 1 year old"):  # fmt: skip
        assert sentence in english, sentence
    bokmål = re.sub(r"<[^>]+>", "", (await ones.get("/personvern?lang=nb")).text)
    assert "Henvendelser: 1 måned etter" in bokmål and "slettes 1 dag etter" in bokmål


def _code_cookie_names() -> set[str]:
    """Every cookie name the broker's code holds (`__Host-…` literals), wherever it is set."""
    names: set[str] = set()
    for path in SRC.rglob("*.py"):
        names |= set(re.findall(r"\"(__Host-[\w-]+)\"", path.read_text()))
    return names


async def test_every_cookie_the_app_sets_is_named_on_the_statement(
    make_client: ClientFactory,
    broker: BrokerContext,
    clinics: dict[str, EnrolledClinic],
    mail_sink: MailSink,  # noqa: F811
) -> None:
    client = await make_client(smtp_url=mail_sink.url, mail_from="kode@broker.test")
    seen: set[str] = set()

    def cookies(response: Any) -> Any:
        seen.update(c.split("=", 1)[0] for c in response.headers.get_list("set-cookie"))
        return response

    cookies(await client.get("/?lang=en"))  # the language chosen
    cookies(await client.get("/send?clinic=fysio-oslo"))  # a form's CSRF cookie
    cookies(await send_form(client, ["fysio-oslo"]))
    cookies(await _sign_in(client, mail_sink))  # the rights session (set on a redirect: in the client's jar)
    seen.update(client.cookies.keys())
    # An operator's session: the same app, the same statement.
    from tests.ops.conftest import Clock

    clock = Clock()
    ops_client = await make_client(clock=clock)
    operator = await make_account(broker, "olga")
    await sign_in(ops_client, operator, clock)
    seen.update(ops_client.cookies.keys())

    page = (await client.get("/personvern")).text
    named = set(re.findall(r"<dt><code>([^<]+)</code></dt>", page))
    assert {"__Host-lang", "__Host-csrf", "__Host-rights", "__Host-rb-ops"} <= seen  # the flows above ran
    assert seen <= named, f"set but not on the statement: {seen - named}"
    assert _code_cookie_names() <= named, f"in the code but not on the statement: {_code_cookie_names() - named}"
    assert named <= seen | _code_cookie_names()  # and nothing named that the service does not set


async def test_the_development_statement_marks_its_examples_and_a_configured_one_has_none(
    make_client: ClientFactory,
) -> None:
    example = (await (await make_client()).get("/personvern")).text
    assert example.count('class="badge badge--waiting">Eksempel</strong>') == 2  # controller and processors
    assert "Eksempelselskapet AS" in example

    page = (await (await make_client(**CONTROLLER)).get("/personvern")).text
    assert "Eksempel" not in page
    for value in (*[v for v in CONTROLLER.values() if isinstance(v, str)], *CONTROLLER["processors"]):
        assert value in page, value


def test_production_refuses_to_serve_without_the_controller_and_processors() -> None:
    production = {
        "DATABASE_URL": "postgresql://x/y",
        "REFERRAL_BROKER_PUBLIC_URL": "https://henvisning.example.no",
        "REFERRAL_BROKER_METRICS_TOKEN": "scrape",
    }
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(production).check_fit_to_serve()
    for name in ("CONTROLLER_NAME", "CONTROLLER_ORG_NUMBER", "CONTROLLER_ADDRESS", "CONTROLLER_EMAIL", "PROCESSORS"):
        assert f"REFERRAL_BROKER_{name}" in str(refused.value)
    configured = {
        **production,
        "REFERRAL_BROKER_CONTROLLER_NAME": "Henvisning Norge AS",
        "REFERRAL_BROKER_CONTROLLER_ORG_NUMBER": "912345678",
        "REFERRAL_BROKER_CONTROLLER_ADDRESS": "Storgata 1, 0155 Oslo",
        "REFERRAL_BROKER_CONTROLLER_EMAIL": "personvern@henvisning.no",
        "REFERRAL_BROKER_PROCESSORS": "Driftspartner AS (servere, Norge); Postbud AS (e-post, EU)",
    }
    settings = Settings.from_env(configured)
    settings.check_fit_to_serve()
    assert settings.processors == ("Driftspartner AS (servere, Norge)", "Postbud AS (e-post, EU)")
    with pytest.raises(ConfigError, match="REFERRAL_BROKER_CONTROLLER_ORG_NUMBER"):
        Settings.from_env({**configured, "REFERRAL_BROKER_CONTROLLER_ORG_NUMBER": "12345"})
    # A developer's machine (plain http) serves with the examples, marked as such.
    Settings.from_env({"DATABASE_URL": "postgresql://x/y"}).check_fit_to_serve()


async def test_every_page_links_the_statement_and_the_consent_has_it_beside_it(
    client: AsyncTestClient[Any], clinics: dict[str, EnrolledClinic]
) -> None:
    link = 'href="/personvern"'
    form = (await client.get("/send?clinic=fysio-oslo")).text
    consent = form[form.index('class="consent__text"') : form.index('id="f-consent"')]
    assert link in consent  # beside the consent text, which itself is unchanged (hash-pinned in the protocol)
    receipt = await send_form(client, ["fysio-oslo"])
    body = receipt.text[receipt.text.index("<main") : receipt.text.index("</main>")]
    assert link in body  # in the receipt itself, not only its footer
    for path in ("/", "/rights", "/personvern", "/no-such-page", "/personvern?lang=en", "/rights?lang=nn"):
        page = (await client.get(path)).text
        footer = page[page.index('<footer class="site-footer">') :]
        assert link in footer, path
    rights = (await client.get("/rights")).text
    assert link in rights[rights.index("<main") : rights.index("</main>")]


async def test_the_statement_speaks_the_visitors_language(client: AsyncTestClient[Any]) -> None:
    for lang, title in (("nb", "Personvernerklæring"), ("en", "Privacy statement"), ("nn", "Personvernerklæring")):
        page = await client.get(f"/personvern?lang={lang}")
        assert page.status_code == 200
        assert f'<html lang="{lang}">' in page.text and f"<h1>{title}</h1>" in page.text
    english = (await client.get("/personvern?lang=en")).text
    for promise in ("article 9(2)(a)", "Datatilsynet", "legal hold", "No tracking", 'href="/rights"', "Version 1.0"):
        assert promise in english, promise
