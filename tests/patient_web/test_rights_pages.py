"""The patient's rights without the manage link, through the real app: a code by e-mail (read from a local
SMTP sink), a session, the list of linked requests, the JSON export, correction, withdrawal and erasure,
signing out, and every refusal on the way."""

from __future__ import annotations

import html
import json
import re
import uuid
from datetime import datetime, timedelta
from http.cookies import SimpleCookie
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from referral_broker.crypto.tokens import token_hash
from referral_broker.domain.retention import months_after
from referral_broker.services import dispatch, retention
from referral_broker.services.context import BrokerContext
from referral_broker.store import deliveries
from referral_broker.web.i18n import CATALOGUES, Translator
from referral_broker.web.patient.rights_access import CODE_REQUESTS_PER_CLIENT, SESSION_COOKIE
from referral_broker.web.patient.rights_views import day
from referral_protocol.notice import NOTICE_KINDS
from referral_protocol.referral import ContactCopy
from tests.conftest import EnrolledClinic
from tests.ops.notice_sinks import MailSink, mail_sink  # noqa: F401 - the SMTP sink fixture
from tests.patient_web.conftest import FIXED_NOW, ClientFactory, csrf_of, manage_token_of, send_form

KARI = "kari@example.no"
NEED = "Vondt i kneet etter fotballtrening"
_CODE_ID = re.compile(r'name="code_id" value="([0-9a-f-]{36})"')
_REFERENCE = re.compile(r"RB-[0-9A-Z]{5}-[0-9A-Z]{5}")


@pytest.fixture(autouse=True)
async def no_codes_left(broker: BrokerContext) -> None:
    """The shared clean-up does not know this table yet; the per-address limit counts its rows."""
    await broker.pool.execute("TRUNCATE rights_codes")


@pytest.fixture
async def client(make_client: ClientFactory, mail_sink: MailSink) -> AsyncTestClient[Any]:  # noqa: F811
    made: AsyncTestClient[Any] = await make_client(smtp_url=mail_sink.url, mail_from="kode@broker.test")
    return made


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(FIXED_NOW)


@pytest.fixture
async def timed_client(
    make_client: ClientFactory,
    mail_sink: MailSink,  # noqa: F811
    clock: Clock,
) -> AsyncTestClient[Any]:
    made: AsyncTestClient[Any] = await make_client(smtp_url=mail_sink.url, clock=clock)
    return made


# --- helpers ----------------------------------------------------------------------------------------


async def _submit(client: AsyncTestClient[Any], slugs: list[str], **changes: str) -> str:
    receipt = await send_form(client, slugs, **changes)
    assert receipt.status_code == 200, receipt.text
    match = _REFERENCE.search(receipt.text)
    assert match
    return match.group(0)


async def _ask(client: AsyncTestClient[Any], channel: str, value: str, *, lang: str | None = None) -> Any:
    page = await client.get("/rights" + (f"?lang={lang}" if lang else ""))
    assert page.status_code == 200
    return await client.post(
        "/rights/code", data={"_csrf_token": csrf_of(page.text), "channel": channel, channel: value}
    )


def _code_in(sink: MailSink, to: str) -> str:
    message = sink.messages[-1]
    assert message["To"] == to
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes)
    match = re.search(r"\b(\d{6})\b", body.decode())
    assert match, body
    return match.group(1)


async def _enter(client: AsyncTestClient[Any], code_page: str, code: str) -> Any:
    code_id = _CODE_ID.search(code_page)
    assert code_id, code_page
    return await client.post(
        "/rights/verify", data={"_csrf_token": csrf_of(code_page), "code_id": code_id.group(1), "code": code}
    )


async def _sign_in(client: AsyncTestClient[Any], sink: MailSink, email: str = KARI) -> Any:
    asked = await _ask(client, "email", email)
    assert asked.status_code == 200, asked.text
    listed = await _enter(client, asked.text, _code_in(sink, email))
    assert listed.status_code == 200, listed.text
    assert str(listed.url).endswith("/rights/requests")
    return listed


async def _act(client: AsyncTestClient[Any], path: str, reference: str, **fields: str) -> Any:
    page = await client.get("/rights/requests")
    return await client.post(path, data={"_csrf_token": csrf_of(page.text), "reference": reference, **fields})


async def _referral_id(broker: BrokerContext, reference: str) -> uuid.UUID:
    found: uuid.UUID = await broker.pool.fetchval("SELECT id FROM referrals WHERE reference = $1", reference)
    return found


async def _dispatch_and_acknowledge(broker: BrokerContext, reference: str, slug: str) -> uuid.UUID:
    referral_id = await _referral_id(broker, reference)
    await dispatch.dispatch_referral(broker, referral_id)
    async with broker.pool.acquire() as conn, conn.transaction():
        clinic_id, delivery_id = await conn.fetchrow(
            """SELECT c.id, d.id FROM deliveries d JOIN clinics c ON c.id = d.clinic_id
               WHERE d.referral_id = $1 AND c.slug = $2""",
            referral_id,
            slug,
        )
        await deliveries.acknowledge(conn, clinic_id, [delivery_id], broker.clock())
    return referral_id


async def _contact(broker: BrokerContext, referral_id: uuid.UUID) -> ContactCopy:
    ciphertext = await broker.pool.fetchval("SELECT contact_ct FROM referrals WHERE id = $1", referral_id)
    return msgspec.json.decode(broker.keys.vault.decrypt(ciphertext, bound_to=referral_id.bytes), type=ContactCopy)


async def _notices(broker: BrokerContext, referral_id: uuid.UUID) -> list[tuple[str, str]]:
    rows = await broker.pool.fetch(
        """SELECT c.slug, n.kind FROM clinic_notices n JOIN deliveries d ON d.id = n.delivery_id
           JOIN clinics c ON c.id = n.clinic_id WHERE d.referral_id = $1 ORDER BY c.slug, n.kind""",
        referral_id,
    )
    return [(r["slug"], r["kind"]) for r in rows]


def _day(moment: datetime, lang: str = "nb") -> str:
    return day(Translator(lang), moment)  # type: ignore[arg-type]


def _shown_references(page: str) -> set[str]:
    return set(re.findall(r'name="reference" value="(RB-[0-9A-Z-]+)"', page))


# --- the start page and the code ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "title", "sealed"),
    [
        ("nb", "Dine henvendelser og rettigheter", "kryptert til klinikkene"),
        ("en", "Your requests and your rights", "encrypted to the clinics"),
    ],
)
async def test_rights_page_explains_the_rights_and_offers_email_or_phone(
    client: AsyncTestClient[Any], lang: str, title: str, sealed: str
) -> None:
    response = await client.get(f"/rights?lang={lang}")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert f"<h1>{title}</h1>" in response.text
    assert sealed in response.text
    assert response.text.count('action="/rights/code"') == 2
    assert 'name="channel" value="email"' in response.text and 'name="channel" value="phone"' in response.text


async def test_home_manage_page_and_receipt_link_to_the_rights_page(
    client: AsyncTestClient[Any], clinics: dict[str, EnrolledClinic]
) -> None:
    assert 'href="/rights"' in (await client.get("/")).text
    receipt = await send_form(client, ["fysio-oslo"])
    assert 'href="/rights"' in receipt.text
    token = re.search(r"/manage/([A-Za-z0-9_-]+)", receipt.text)
    assert token
    assert 'href="/rights"' in (await client.get(f"/manage/{token.group(1)}")).text


async def test_a_code_is_mailed_and_the_code_page_keeps_the_address_out_of_urls(
    client: AsyncTestClient[Any],
    broker: BrokerContext,
    clinics: dict[str, EnrolledClinic],
    mail_sink: MailSink,  # noqa: F811
) -> None:
    await _submit(client, ["fysio-oslo"])
    response = await _ask(client, "email", "  Kari@Example.no ")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert "Skriv inn koden" in response.text
    assert _CODE_ID.search(response.text)
    actions = re.findall(r'action="([^"]+)"', response.text)
    assert actions == ["/rights/verify"]
    assert all("@" not in a and "kari" not in a.lower() for a in actions)
    [mail] = mail_sink.messages
    assert mail["To"] == KARI
    code = _code_in(mail_sink, KARI)
    assert code not in response.text
    stored = await broker.pool.fetchrow("SELECT code_hash, channel FROM rights_codes")
    assert stored["channel"] == "email" and code.encode() not in stored["code_hash"]


async def test_the_code_page_is_the_same_whether_or_not_the_address_has_requests(
    client: AsyncTestClient[Any],
    clinics: dict[str, EnrolledClinic],
    mail_sink: MailSink,  # noqa: F811
) -> None:
    await _submit(client, ["fysio-oslo"])

    def normalised(page: str) -> str:
        # The code's random id (in the form and in the language switch's link) is all that may differ.
        return re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "…", page)

    linked = await _ask(client, "email", KARI)
    unknown = await _ask(client, "email", "ingen.henvendelser@example.no")
    assert linked.status_code == unknown.status_code == 200
    assert normalised(linked.text) == normalised(unknown.text)
    assert len(mail_sink.messages) == 2


@pytest.mark.parametrize(
    ("channel", "typed", "message"),
    [
        ("email", "kari@", "Skriv en gyldig e-postadresse"),
        ("email", "   ", "Skriv e-postadressen din"),
        ("phone", "12 34", "Skriv et gyldig telefonnummer"),
    ],
)
async def test_a_wrong_address_gets_a_message_at_the_field_and_keeps_what_was_typed(
    client: AsyncTestClient[Any],
    mail_sink: MailSink,  # noqa: F811
    channel: str,
    typed: str,
    message: str,
) -> None:
    response = await _ask(client, channel, typed)
    assert response.status_code == 422
    assert f'id="f-{channel}-error"' in response.text
    assert message in response.text
    assert f'value="{typed}"' in response.text
    assert 'aria-invalid="true"' in response.text
    assert mail_sink.messages == []


async def test_a_code_by_text_message_goes_through_the_dev_outbox(
    make_client: ClientFactory, tmp_path: Any, clinics: dict[str, EnrolledClinic]
) -> None:
    client = await make_client(dev_outbox=tmp_path)
    await _submit(client, ["fysio-oslo"])
    response = await _ask(client, "phone", "412 34 567")
    assert response.status_code == 200
    assert "SMS" in response.text
    [sms] = list(tmp_path.glob("*.sms.txt"))
    text = sms.read_text()
    assert text.startswith("To: +4741234567")
    code = re.search(r"\b(\d{6})\b", text)
    assert code
    listed = await _enter(client, response.text, code.group(1))
    assert "mobilnummeret du bekreftet" in listed.text
    assert len(_shown_references(listed.text)) == 1


async def test_a_code_that_cannot_be_sent_says_so_and_loses_nothing(
    client: AsyncTestClient[Any],
    broker: BrokerContext,
    mail_sink: MailSink,  # noqa: F811
) -> None:
    mail_sink.refuse = True
    response = await _ask(client, "email", KARI)
    assert response.status_code == 503
    assert "Koden kunne ikke sendes" in response.text
    assert f'value="{KARI}"' in response.text
    assert await broker.pool.fetchval("SELECT count(*) FROM rights_codes") == 0
    mail_sink.refuse = False
    assert (await _ask(client, "email", KARI)).status_code == 200


# --- entering the code ------------------------------------------------------------------------------


async def test_the_right_code_opens_a_session_with_a_host_only_strict_cookie(
    client: AsyncTestClient[Any],
    clinics: dict[str, EnrolledClinic],
    mail_sink: MailSink,  # noqa: F811
) -> None:
    reference = await _submit(client, ["fysio-oslo"])
    listed = await _sign_in(client, mail_sink)
    [redirect] = listed.history
    assert redirect.status_code == 303 and redirect.headers["location"] == "/rights/requests"
    [header] = redirect.headers.get_list("set-cookie")
    cookie = SimpleCookie()
    cookie.load(header)
    morsel = cookie[SESSION_COOKIE]
    assert morsel["secure"] and morsel["httponly"] and morsel["samesite"].lower() == "strict"
    assert morsel["path"] == "/" and not morsel["domain"] and not morsel["max-age"]
    assert len(morsel.value) >= 43  # 256 bits
    assert _shown_references(listed.text) == {reference}


async def test_a_wrong_code_is_refused_clearly_and_five_wrong_tries_use_the_code_up(
    client: AsyncTestClient[Any],
    broker: BrokerContext,
    clinics: dict[str, EnrolledClinic],
    mail_sink: MailSink,  # noqa: F811
) -> None:
    await _submit(client, ["fysio-oslo"])
    page = (await _ask(client, "email", KARI)).text
    right = _code_in(mail_sink, KARI)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for _ in range(4):
        refused = await _enter(client, page, wrong)
        assert refused.status_code == 422
        assert "Koden stemmer ikke. Sjekk sifrene og prøv igjen." in refused.text
        assert 'href="/rights"' in refused.text  # ask for a new code
        assert _CODE_ID.search(refused.text)  # and try again here
        assert SESSION_COOKIE not in refused.headers.get("set-cookie", "")
        page = refused.text
    empty = await _enter(client, page, "")
    assert empty.status_code == 422 and "Skriv koden vi sendte deg" in empty.text
    fifth = await _enter(client, page, wrong)
    assert fifth.status_code == 422 and "Denne koden er brukt opp" in fifth.text  # the fifth wrong try uses it up
    assert not _CODE_ID.search(fifth.text) and 'id="new-code" href="/rights"' in fifth.text  # no use trying here
    after = await _enter(client, page, right)  # the right digits, too late (issue 22, item 8)
    assert after.status_code == 422
    assert "Denne koden er brukt opp" in after.text and "Sjekk sifrene" not in after.text
    assert SESSION_COOKIE not in after.headers.get("set-cookie", "")
    assert await broker.pool.fetchval("SELECT attempts FROM rights_codes") == 5


async def test_a_mistyped_code_can_be_tried_again(
    client: AsyncTestClient[Any],
    clinics: dict[str, EnrolledClinic],
    mail_sink: MailSink,  # noqa: F811
) -> None:
    reference = await _submit(client, ["fysio-oslo"])
    page = (await _ask(client, "email", KARI)).text
    right = _code_in(mail_sink, KARI)
    refused = await _enter(client, page, "000000" if right != "000000" else "111111")
    listed = await _enter(client, refused.text, f"{right[:3]} {right[3:]}")
    assert listed.status_code == 200 and _shown_references(listed.text) == {reference}


async def test_an_expired_code_and_an_expired_session_send_the_patient_back(
    timed_client: AsyncTestClient[Any],
    clock: Clock,
    clinics: dict[str, EnrolledClinic],
    mail_sink: MailSink,  # noqa: F811
) -> None:
    client = timed_client
    await _submit(client, ["fysio-oslo"])
    page = (await _ask(client, "email", KARI)).text
    clock.now += timedelta(minutes=15, seconds=1)
    assert (await _enter(client, page, _code_in(mail_sink, KARI))).status_code == 422

    await _sign_in(client, mail_sink)
    clock.now += timedelta(minutes=29)
    assert (await client.get("/rights/requests")).status_code == 200
    clock.now += timedelta(minutes=1, seconds=1)
    back = await client.get("/rights/requests")
    assert str(back.url).endswith("/rights?session=ended")
    assert "Økten din er avsluttet eller utløpt" in back.text
    assert "Max-Age=0" in back.history[0].headers["set-cookie"]


async def test_missing_session_goes_back_to_the_start_with_a_message(client: AsyncTestClient[Any]) -> None:
    for path in ("/rights/requests", "/rights/export.json", "/rights/export"):
        response = await client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/rights?session=ended"
    page = await client.get("/rights/requests")
    assert "Be om en ny kode" in page.text
    csrf = csrf_of(page.text)
    for path in ("/rights/correct", "/rights/withdraw/confirm", "/rights/erase/confirm"):
        response = await client.post(
            path, data={"_csrf_token": csrf, "reference": "RB-AAAAA-AAAAA"}, follow_redirects=False
        )
        assert response.status_code == 303, path


# --- limits -----------------------------------------------------------------------------------------


async def test_too_many_codes_to_one_address_are_refused_with_a_clear_message(
    client: AsyncTestClient[Any],
    mail_sink: MailSink,  # noqa: F811
) -> None:
    for _ in range(5):
        assert (await _ask(client, "email", KARI)).status_code == 200
    refused = await _ask(client, "email", KARI)
    assert refused.status_code == 429
    assert "For mange koder til denne adressen" in refused.text
    assert f'value="{KARI}"' in refused.text
    assert len(mail_sink.messages) == 5
    assert (await _ask(client, "email", "annen@example.no")).status_code == 200


async def test_one_client_cannot_ask_for_codes_to_many_addresses(
    timed_client: AsyncTestClient[Any],
    mail_sink: MailSink,  # noqa: F811
) -> None:
    for n in range(CODE_REQUESTS_PER_CLIENT):
        assert (await _ask(timed_client, "email", f"person{n}@example.no")).status_code == 200
    refused = await _ask(timed_client, "email", "one.more@example.no", lang="en")
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0
    assert "Too many codes asked for from your connection" in refused.text
    assert len(mail_sink.messages) == CODE_REQUESTS_PER_CLIENT


# --- CSRF ---------------------------------------------------------------------------------------------

POST_ROUTES = [
    "/rights/code",
    "/rights/verify",
    "/rights/correct",
    "/rights/correct/save",
    "/rights/withdraw",
    "/rights/withdraw/confirm",
    "/rights/erase",
    "/rights/erase/confirm",
    "/rights/sign-out",
]


async def test_every_rights_form_needs_its_csrf_token(
    client: AsyncTestClient[Any],
    broker: BrokerContext,
    clinics: dict[str, EnrolledClinic],
    mail_sink: MailSink,  # noqa: F811
) -> None:
    reference = await _submit(client, ["fysio-oslo"])
    await _sign_in(client, mail_sink)
    assert set(POST_ROUTES) <= {r.path for r in client.app.routes}
    for path in POST_ROUTES:
        for token in (None, "0" * 128):
            data = {"reference": reference, "channel": "email", "email": KARI, "name": "X"}
            if token:
                data["_csrf_token"] = token
            response = await client.post(path, data=data, follow_redirects=False)
            assert response.status_code == 403, path
            assert "Skjemaet kunne ikke sendes" in response.text
    row = await broker.pool.fetchrow(
        "SELECT withdrawn_at, anonymised_at FROM referrals WHERE reference = $1", reference
    )
    assert row["withdrawn_at"] is None and row["anonymised_at"] is None
    assert (await client.get("/rights/requests")).status_code == 200  # not signed out either
    assert len(mail_sink.messages) == 1


# --- what a session sees and does ---------------------------------------------------------------------


async def test_the_list_shows_only_requests_linked_to_the_address_and_never_their_content(
    client: AsyncTestClient[Any],
    broker: BrokerContext,
    clinics: dict[str, EnrolledClinic],
    mail_sink: MailSink,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = await _submit(client, ["fysio-oslo", "psyk-oslo"])
    second = await _submit(client, ["hud-bergen"], phone="+47 98765432")
    others = await _submit(client, ["fysio-oslo"], email="ola@example.no", phone="+47 91234567")
    monkeypatch.setattr(dispatch, "BATCH", 1)  # the second stays waiting: dispatch the first alone
    await _dispatch_and_acknowledge(broker, first, "fysio-oslo")
    listed = await _sign_in(client, mail_sink)
    page = listed.text
    assert listed.headers["cache-control"] == "no-store"
    assert _shown_references(page) == {first, second}
    assert others not in page
    assert NEED not in page and "Kari Nordmann" not in page
    assert "Mottatt av klinikken" in page and "Levert til klinikkens innboks" in page
    assert "Venter på å bli levert" in page
    assert "Klinikk psyk-oslo" in page and "Klinikk hud-bergen" in page
    row = await broker.pool.fetchrow("SELECT created_at, retention_anchor FROM referrals WHERE reference = $1", first)
    assert _day(row["created_at"]) in page  # the day it was sent
    deleted_by = months_after(row["retention_anchor"], 5)  # five months after the dispatch
    assert _day(deleted_by) in page
    english = await client.get("/rights/requests?lang=en")
    assert "Received by the clinic" in english.text and _day(deleted_by, "en") in english.text


async def test_export_is_an_attachment_with_the_contact_copy_and_no_need(
    client: AsyncTestClient[Any],
    broker: BrokerContext,
    clinics: dict[str, EnrolledClinic],
    mail_sink: MailSink,  # noqa: F811
) -> None:
    reference = await _submit(client, ["fysio-oslo", "psyk-oslo"])
    await _dispatch_and_acknowledge(broker, reference, "fysio-oslo")
    await _sign_in(client, mail_sink)
    response = await client.get("/rights/export.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["content-disposition"].startswith("attachment")
    assert response.headers["cache-control"] == "no-store"
    assert NEED not in response.text
    document = json.loads(response.content)
    assert document["format"] == "referral-broker/subject-access/v1"
    assert "kan ikke lese" in document["explanation"]["nb"]
    [referral] = document["referrals"]
    assert referral["reference"] == reference
    assert referral["contact_details"]["name"] == "Kari Nordmann"
    assert referral["contact_details"]["email"] == KARI
    assert referral["contact_details"]["phone"] == "+4741234567"
    assert {d["clinic"]: d["status"] for d in referral["deliveries"]} == {
        "fysio-oslo": "acknowledged",
        "psyk-oslo": "available",
    }
    assert referral["consent"]["version"] == "2026-11-01"
    actions = await broker.pool.fetch("SELECT action, details::text FROM audit_events WHERE action LIKE 'rights.%'")
    assert "rights.exported" in {a["action"] for a in actions}
    assert all(KARI not in a["details"] for a in actions)


async def test_the_export_is_also_a_readable_printable_page_of_the_same_document(
    client: AsyncTestClient[Any],
    broker: BrokerContext,
    clinics: dict[str, EnrolledClinic],
    mail_sink: MailSink,  # noqa: F811
) -> None:
    reference = await _submit(client, ["fysio-oslo", "psyk-oslo"])
    await _dispatch_and_acknowledge(broker, reference, "fysio-oslo")
    listed = await _sign_in(client, mail_sink)
    assert 'href="/rights/export"' in listed.text and 'href="/rights/export.json"' in listed.text
    document = json.loads((await client.get("/rights/export.json")).content)
    [referral] = document["referrals"]
    for lang, words in {
        "en": ("Everything we hold about you", "Received by the clinic", "Version of the consent text"),
        "nb": ("Alt vi har om deg", "Mottatt av klinikken", "Versjon av samtykketeksten"),
    }.items():
        page = await client.get(f"/rights/export?lang={lang}")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-store"
        text = html.unescape(page.text)
        assert all(word in text for word in words)
        assert document["explanation"][lang] in text  # the same words as the file, retention sentence included
        assert reference in text and NEED not in text
        for value in (referral["contact_details"]["name"], KARI, "+4741234567", referral["consent"]["text_sha256"]):
            assert value in text
        assert "Klinikk fysio-oslo" in text and "Klinikk psyk-oslo" in text
        assert 'href="/rights/export.json"' in text  # the JSON download is kept
    assert "17. mai 1990" in html.unescape((await client.get("/rights/export?lang=nb")).text)
    audited = await broker.pool.fetch("SELECT details FROM audit_events WHERE action = 'rights.exported'")
    assert sorted(
        json.loads(a["details"])["form"] if isinstance(a["details"], str) else a["details"]["form"] for a in audited
    ) == ["json", "page", "page", "page"]


async def test_correcting_contact_details_updates_the_copy_and_tells_the_clinics(
    client: AsyncTestClient[Any],
    broker: BrokerContext,
    clinics: dict[str, EnrolledClinic],
    mail_sink: MailSink,  # noqa: F811
) -> None:
    reference = await _submit(client, ["fysio-oslo", "psyk-oslo"])
    referral_id = await _dispatch_and_acknowledge(broker, reference, "fysio-oslo")
    await _sign_in(client, mail_sink)

    form = await _act(client, "/rights/correct", reference)
    assert form.status_code == 200
    assert 'value="Kari Nordmann"' in form.text and 'value="17.05.1990"' in form.text
    assert f'value="{KARI}"' in form.text and 'value="+47 41 23 45 67"' in form.text
    assert "Klinikk fysio-oslo og Klinikk psyk-oslo" in form.text

    csrf = csrf_of(form.text)
    fields = {"name": "Kari Nordmann-Hansen", "email": KARI, "phone": "12", "birth_date": "31.02.1990"}
    wrong = await client.post("/rights/correct/save", data={"_csrf_token": csrf, "reference": reference, **fields})
    assert wrong.status_code == 422
    assert 'id="f-phone-error"' in wrong.text and 'id="f-birth_date-error"' in wrong.text
    assert 'value="Kari Nordmann-Hansen"' in wrong.text
    assert (await _contact(broker, referral_id)).name == "Kari Nordmann"

    fields |= {"phone": "987 65 432", "birth_date": "17.05.1990"}
    done = await client.post("/rights/correct/save", data={"_csrf_token": csrf, "reference": reference, **fields})
    assert done.status_code == 200
    assert "Kontaktopplysningene dine er rettet" in done.text
    assert "Endret: Fullt navn og Mobilnummer." in done.text
    # fysio-oslo has it and is told; psyk-oslo has not fetched it yet and gets the details with it (0140)
    assert "Disse klinikkene får de rettede opplysningene: Klinikk fysio-oslo." in done.text
    assert "De får de rettede opplysningene sammen med henvendelsen: Klinikk psyk-oslo." in done.text
    contact = await _contact(broker, referral_id)
    assert (contact.name, contact.phone, contact.email) == ("Kari Nordmann-Hansen", "+4798765432", KARI)
    assert await _notices(broker, referral_id) == [("fysio-oslo", "correction"), ("psyk-oslo", "correction")]
    assert _shown_references(done.text) == {reference}
    assert "rettede kontaktopplysninger" in done.text  # the notices, listed under the request

    # Changing the address this session confirmed: the request leaves this list, and the page says why.
    moved = await _act(client, "/rights/correct/save", reference, **(fields | {"email": "kari.ny@example.no"}))
    assert "Du endret adressen du bekreftet" in moved.text
    assert _shown_references(moved.text) == set()
    assert (await _contact(broker, referral_id)).email == "kari.ny@example.no"


async def test_withdrawal_asks_first_then_stops_what_is_undelivered(
    client: AsyncTestClient[Any],
    broker: BrokerContext,
    clinics: dict[str, EnrolledClinic],
    mail_sink: MailSink,  # noqa: F811
) -> None:
    reference = await _submit(client, ["fysio-oslo", "psyk-oslo"])
    referral_id = await _dispatch_and_acknowledge(broker, reference, "fysio-oslo")
    await _sign_in(client, mail_sink)
    confirm = await _act(client, "/rights/withdraw", reference)
    assert confirm.status_code == 200
    assert "Trekke tilbake samtykket?" in confirm.text
    assert 'action="/rights/withdraw/confirm"' in confirm.text
    assert await broker.pool.fetchval("SELECT withdrawn_at FROM referrals WHERE id = $1", referral_id) is None

    done = await _act(client, "/rights/withdraw/confirm", reference)
    assert done.status_code == 200
    assert "Samtykket er trukket tilbake" in done.text
    assert "Stanset før klinikken mottok den: Klinikk psyk-oslo." in done.text
    assert await broker.pool.fetchval("SELECT withdrawn_at FROM referrals WHERE id = $1", referral_id) is not None
    states = await broker.pool.fetch(
        """SELECT c.slug, d.status FROM deliveries d JOIN clinics c ON c.id = d.clinic_id
           WHERE d.referral_id = $1 ORDER BY c.slug""",
        referral_id,
    )
    assert [(r["slug"], r["status"]) for r in states] == [("fysio-oslo", "acknowledged"), ("psyk-oslo", "cancelled")]
    assert ("fysio-oslo", "withdrawal") in await _notices(broker, referral_id)
    assert 'action="/rights/withdraw"' not in done.text  # nothing left to withdraw
    withdrawn_at = await broker.pool.fetchval("SELECT withdrawn_at FROM referrals WHERE id = $1", referral_id)
    assert f"Trukket tilbake {_day(withdrawn_at)}" in done.text


async def test_erasure_says_what_remains_then_removes_the_person_and_tells_the_clinics(
    client: AsyncTestClient[Any],
    broker: BrokerContext,
    clinics: dict[str, EnrolledClinic],
    mail_sink: MailSink,  # noqa: F811
) -> None:
    reference = await _submit(client, ["fysio-oslo", "psyk-oslo"])
    kept = await _submit(client, ["hud-bergen"])
    referral_id = await _dispatch_and_acknowledge(broker, reference, "fysio-oslo")
    await _sign_in(client, mail_sink)
    confirm = await _act(client, "/rights/erase", reference)
    assert confirm.status_code == 200
    sent = await broker.pool.fetchval("SELECT created_at FROM referrals WHERE id = $1", referral_id)
    assert (
        f"at en henvendelse til Klinikk fysio-oslo og Klinikk psyk-oslo ble mottatt {_day(sent)} og "
        f"slettet {_day(broker.clock())}, uten noen person i den"
    ) in confirm.text
    assert "med mindre de har plikt til å beholde den" in confirm.text
    assert "har ikke mottatt henvendelsen, og får derfor ingen beskjed: Klinikk psyk-oslo." in confirm.text
    assert await broker.pool.fetchval("SELECT erased_at FROM referrals WHERE id = $1", referral_id) is None

    done = await _act(client, "/rights/erase/confirm", reference)
    assert done.status_code == 200
    assert "Henvendelsen er slettet" in done.text
    assert "beholde den: Klinikk fysio-oslo." in done.text
    assert "har derfor ikke fått noen beskjed: Klinikk psyk-oslo." in done.text
    assert _shown_references(done.text) == {kept}
    row = await broker.pool.fetchrow(
        "SELECT reference, contact_ct, email_bidx, erased_at, anonymised_at FROM referrals WHERE id = $1", referral_id
    )
    assert row["reference"] is None and row["contact_ct"] is None and row["email_bidx"] is None
    assert row["erased_at"] is not None and row["anonymised_at"] is not None
    # psyk-oslo never fetched it (its copy waited unserved): it is not told (decision 0139)
    assert await _notices(broker, referral_id) == [("fysio-oslo", "erasure")]
    again = await _act(client, "/rights/erase/confirm", reference)
    assert again.status_code == 404 and "Vi finner ikke den henvendelsen" in again.text


async def test_the_code_page_switches_language_and_keeps_the_code_it_waits_for(
    client: AsyncTestClient[Any],
    broker: BrokerContext,
    clinics: dict[str, EnrolledClinic],
    mail_sink: MailSink,  # noqa: F811
) -> None:
    await _submit(client, ["fysio-oslo"])
    asked = await _ask(client, "email", KARI, lang="nb")
    code_id = _CODE_ID.search(asked.text).group(1)  # type: ignore[union-attr]
    switch = re.search(r'<a class="language-switch" href="([^"]+)" lang="en"', asked.text)
    assert switch, "the code page has no language switch"
    url = html.unescape(switch.group(1))
    assert url == f"/rights/code?id={code_id}&channel=email&lang=en"
    english = await client.get(url)
    assert english.status_code == 200 and '<html lang="en">' in english.text
    assert f'value="{code_id}"' in english.text and KARI not in english.text
    opened = await _enter(client, english.text, _code_in(mail_sink, KARI))  # the same code still opens it
    assert str(opened.url).endswith("/rights/requests")
    bad = await client.get("/rights/code?id=not-an-id", follow_redirects=False)
    assert bad.status_code == 303 and bad.headers["location"].startswith("/rights?")


async def test_after_erasure_the_manage_link_says_it_was_erased_on_that_day_and_nothing_more(
    client: AsyncTestClient[Any],
    broker: BrokerContext,
    clinics: dict[str, EnrolledClinic],
    mail_sink: MailSink,  # noqa: F811
) -> None:
    receipt = await send_form(client, ["fysio-oslo"])
    token = manage_token_of(receipt.text)
    reference = _REFERENCE.search(receipt.text).group(0)  # type: ignore[union-attr]
    await _sign_in(client, mail_sink)
    assert (await _act(client, "/rights/erase/confirm", reference)).status_code == 200

    for lang, words in {
        "nb": f"Denne henvendelsen ble slettet {_day(broker.clock())}.",
        "en": f"This request was erased on {_day(broker.clock(), 'en')}.",
    }.items():
        page = await client.get(f"/manage/{token}?lang={lang}")
        assert page.status_code == 410
        text = html.unescape(page.text)
        assert words in text
        main = text[text.index("<main") : text.index("</main>")]
        assert reference not in main and "Klinikk" not in main and "Kari" not in main  # nothing more
    csrf = csrf_of((await client.get("/rights")).text)
    asked = await client.post(f"/manage/{token}/withdraw", data={"_csrf_token": csrf})
    assert asked.status_code == 410
    wrong = await client.get(f"/manage/{token[:-3]}xyz")
    assert wrong.status_code == 404 and "We cannot find this page" in wrong.text  # the language chosen above

    # What is kept: a keyed hash of the link and the day, linked to nothing (no referral id, no token hash).
    [row] = await broker.pool.fetch("SELECT * FROM erased_manage_links")
    assert set(row.keys()) == {"link_hash", "erased_on"}
    assert row["link_hash"] != token_hash(token)
    assert await broker.pool.fetchval("SELECT count(*) FROM referrals WHERE manage_token_hash IS NOT NULL") == 0

    # Once the retention period has passed since the erasure, the retention run forgets it.
    run = await retention.anonymise_expired(broker, now=broker.clock() + timedelta(days=31 * 6))
    assert run.anonymised == 0
    assert await broker.pool.fetchval("SELECT count(*) FROM erased_manage_links") == 0
    assert (await client.get(f"/manage/{token}")).status_code == 404


async def test_a_reference_not_linked_to_the_confirmed_address_is_refused(
    client: AsyncTestClient[Any],
    broker: BrokerContext,
    clinics: dict[str, EnrolledClinic],
    mail_sink: MailSink,  # noqa: F811
) -> None:
    await _submit(client, ["fysio-oslo"])
    others = await _submit(client, ["fysio-oslo"], email="ola@example.no", phone="+47 91234567")
    await _sign_in(client, mail_sink)
    for path in ("/rights/correct", "/rights/withdraw", "/rights/withdraw/confirm", "/rights/erase/confirm"):
        response = await _act(client, path, others)
        assert response.status_code == 404, path
        assert "Vi finner ikke den henvendelsen" in response.text
    response = await _act(client, "/rights/correct/save", others, name="Ola", email="x@example.no")
    assert response.status_code == 404
    row = await broker.pool.fetchrow("SELECT withdrawn_at, anonymised_at FROM referrals WHERE reference = $1", others)
    assert row["withdrawn_at"] is None and row["anonymised_at"] is None


async def test_signing_out_ends_the_session_on_the_server(
    client: AsyncTestClient[Any],
    clinics: dict[str, EnrolledClinic],
    mail_sink: MailSink,  # noqa: F811
) -> None:
    await _submit(client, ["fysio-oslo"])
    await _sign_in(client, mail_sink)
    token = client.cookies.get(SESSION_COOKIE)
    assert token
    page = await client.get("/rights/requests")
    out = await client.post("/rights/sign-out", data={"_csrf_token": csrf_of(page.text)})
    assert str(out.url).endswith("/rights?session=signed_out")
    assert "Du er logget ut" in out.text
    assert "Max-Age=0" in out.history[0].headers["set-cookie"]
    client.cookies.set(SESSION_COOKIE, token, domain="testserver.local")  # a kept copy of the cookie
    replay = await client.get("/rights/requests", follow_redirects=False)
    assert replay.status_code == 303


async def test_a_new_sign_in_ends_the_session_the_browser_held(
    client: AsyncTestClient[Any],
    clinics: dict[str, EnrolledClinic],
    mail_sink: MailSink,  # noqa: F811
) -> None:
    await _submit(client, ["fysio-oslo"])
    await _sign_in(client, mail_sink)
    first = client.cookies.get(SESSION_COOKIE)
    await _sign_in(client, mail_sink)
    second = client.cookies.get(SESSION_COOKIE)
    assert first and second and first != second
    client.cookies.set(SESSION_COOKIE, first, domain="testserver.local")
    assert (await client.get("/rights/requests", follow_redirects=False)).status_code == 303


async def test_nothing_personal_reaches_the_logs(
    client: AsyncTestClient[Any],
    clinics: dict[str, EnrolledClinic],
    mail_sink: MailSink,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    await _submit(client, ["fysio-oslo"])
    await _sign_in(client, mail_sink)
    await client.get("/rights/export.json")
    mail_sink.refuse = True
    await _ask(client, "email", KARI)
    code = _code_in(mail_sink, KARI)
    assert caplog.records  # the refused mail is logged
    for record in caplog.records:
        if record.name.startswith("mail.log"):  # the test's own SMTP sink
            continue
        text = record.getMessage()
        assert "kari" not in text.lower() and "41234567" not in text and code not in text, text


@pytest.mark.parametrize("language", ["nb", "en"])
def test_every_text_the_rights_pages_build_a_key_for_exists(language: str) -> None:
    catalogue = CATALOGUES[language]  # type: ignore[index]
    keys = [
        f"rights.problem.{p}{end}"
        for p in ("too_many_codes", "too_many_here", "not_sent", "not_linked")
        for end in ("", "_title")
    ]
    keys += [f"rights.arrival.{a}" for a in ("ended", "signed_out")]
    keys += [f"rights.{k}.{c}" for k in ("code_sent", "requests_lead") for c in ("email", "phone")]
    keys += [
        f"rights.done.{k}{end}" for k in ("corrected", "unchanged", "withdrawn", "erased") for end in ("", "_title")
    ]
    keys += [f"rights.done_told.{k}" for k in ("corrected", "withdrawn", "erased")]
    keys += [f"rights.confirm.{a}_{p}" for a in ("withdraw", "erase") for p in ("title", "button", "final")]
    keys += [f"rights.confirm_told.{a}" for a in ("withdraw", "erase")]
    keys += [f"rights.notice_kind.{k}" for k in NOTICE_KINDS]
    keys += [f"rights.notice_status.{s}" for s in ("waiting", "acknowledged", "expired")]
    assert [k for k in keys if k not in catalogue] == []
