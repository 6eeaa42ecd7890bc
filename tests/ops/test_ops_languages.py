"""The operators' pages speak bokmål to a browser that asks for Norwegian (Nynorsk too: they have no Nynorsk),
and English otherwise, as they always did."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from litestar.testing import AsyncTestClient

from referral_broker.services.context import BrokerContext
from referral_broker.services.monitoring import Flag
from referral_broker.web.i18n import Translator
from referral_broker.web.ops import display
from tests.conftest import enrol_clinic
from tests.ops.conftest import Account, Clock, post_login, sign_in, submit_and_dispatch


async def test_the_sign_in_page_in_the_browser_s_language(client: AsyncTestClient[Any]) -> None:
    for asked, lang, title in [
        (None, "en", "Sign in"),
        ("en-GB,en;q=0.9", "en", "Sign in"),
        ("nb-NO,nb;q=0.9", "nb", "Logg inn"),
        ("no", "nb", "Logg inn"),
        ("nn-NO,en;q=0.5", "nb", "Logg inn"),
    ]:
        page = (await client.get("/ops/login", headers={"accept-language": asked} if asked else {})).text
        assert f'<html lang="{lang}">' in page, asked
        assert f"<h1>{title}</h1>" in page, asked
    assert '<html lang="nb">' in (await client.get("/ops/login?lang=nn")).text


async def test_the_switch_leads_to_the_other_language_and_is_remembered(client: AsyncTestClient[Any]) -> None:
    english = (await client.get("/ops/login")).text
    assert '<a class="ops-lang" href="?lang=nb" lang="nb" hreflang="nb">Norsk</a>' in english
    switched = await client.get("/ops/login?lang=nb")
    assert '<html lang="nb">' in switched.text
    assert '<a class="ops-lang" href="?lang=en" lang="en" hreflang="en">English</a>' in switched.text
    assert "__Host-lang=nb" in switched.headers["set-cookie"]
    assert '<html lang="nb">' in (await client.get("/ops/login", headers={"accept-language": "en"})).text


async def test_a_refused_sign_in_says_why_in_bokmal(
    client: AsyncTestClient[Any], operator: Account, clock: Clock
) -> None:
    client.headers["accept-language"] = "nb"
    refused = await post_login(client, operator, clock, password="wrong password!")
    assert refused.status_code == 401
    assert "Brukernavnet, passordet eller koden er feil." in refused.text


async def test_the_dashboard_and_audit_trail_in_bokmal(
    client: AsyncTestClient[Any], broker: BrokerContext, operator: Account, clock: Clock
) -> None:
    await enrol_clinic(broker, "klinikk-a")
    await submit_and_dispatch(client, broker, ["klinikk-a"])
    await sign_in(client, operator, clock)
    client.headers["accept-language"] = "nb-NO"
    dashboard = await client.get("/ops")
    assert '<html lang="nb">' in dashboard.text
    for text in ("<h1>Levering</h1>", "Klinikker", "Døde leveringer", "Gjennomstrømning per time, siste døgn"):
        assert text in dashboard.text, text
    assert "Ingen arbeider har meldt seg ennå" in dashboard.text  # a flag, from the services
    assert "Dead deliveries" not in dashboard.text
    audit = await client.get("/ops/audit/verify")
    assert "<h1>Revisjonslogg</h1>" in audit.text and "Kjeden er intakt" in audit.text
    assert "Et tidspunkt må se slik ut" in (await client.get("/ops/audit?since=yesterday")).text


def test_ages_read_in_each_language() -> None:
    span = timedelta(hours=3, minutes=5)
    assert display.Display(Translator("nb")).duration(span) == "3 t 5 min"
    assert display.Display(Translator("en")).duration(span) == "3 h 5 min"
    shown = display.Display(Translator("nb"))
    at = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert shown.ago(at, at - timedelta(seconds=42)) == "for 42 s siden"
    assert shown.ago(at, None) == "aldri"
    assert shown.seconds(0.42) == "0.4 s"


def test_a_flag_counts_in_each_language() -> None:
    one, two = Flag("alert", "ops.flag.dead", count=1), Flag("alert", "ops.flag.dead", count=2)
    assert one.text == "1 dead delivery: not retried until an operator does."
    assert two.text == "2 dead deliveries: not retried until an operator does."
    assert one.text_in("nb") == "1 død levering: prøves ikke igjen før en driftsoperatør gjør det."
    assert two.text_in("nb") == "2 døde leveringer: prøves ikke igjen før en driftsoperatør gjør det."
