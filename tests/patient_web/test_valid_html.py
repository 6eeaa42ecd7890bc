"""Every page is valid HTML: each page a patient or an operator can reach, in every language, with and without
errors, rendered by the real app and checked in one run of the Nu Html Checker (vnu.jar, `make html-checker`)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from referral_broker.services import dispatch
from referral_broker.services.context import BrokerContext
from tests.conftest import EnrolledClinic
from tests.ops.conftest import Clock, make_account, post_form, post_login, sign_in, submit_and_dispatch
from tests.ops.notice_sinks import MailSink, mail_sink  # noqa: F401 - the SMTP sink fixture
from tests.patient_web.conftest import ClientFactory, csrf_of, form_token, good_form, manage_token_of

VNU_JAR = (
    Path(__file__).resolve().parents[1] / "html-checker" / "node_modules" / "vnu-jar" / "build" / "dist" / "vnu.jar"
)
KARI = "kari@example.no"
_CODE_ID = re.compile(r'name="code_id" value="([0-9a-f-]{36})"')
_REFERENCE = re.compile(r'name="reference" value="(RB-[0-9A-Z-]+)"')
_SIX_DIGITS = re.compile(r"\b(\d{6})\b")


@dataclass
class Pages:
    """Rendered pages by name; each is checked for the status it should have when it is added."""

    folder: Path
    names: list[str] = field(default_factory=list)

    def add(self, name: str, response: Any, status: int, lang: str | None = None) -> str:
        assert response.status_code == status, f"{name}: {response.status_code} {response.text[:500]}"
        assert response.headers["content-type"].startswith("text/html"), name
        html: str = response.text
        if lang:  # the page really is in the language it is checked in
            assert f'<html lang="{lang}">' in html, name
        (self.folder / f"{name}.html").write_text(html, encoding="utf-8")
        self.names.append(name)
        return html


_CONTROL = "control-glued-attributes"
_CONTROL_PAGE = """<!doctype html><html lang="en"><head><title>control</title></head><body>
<input type="checkbox" id="c" name="c" requiredaria-describedby="e"><label for="c">c</label></body></html>"""


def html_errors(folder: Path) -> list[str]:
    """One run of the checker over every page in `folder` (one JVM start): its errors, one readable line each."""
    (folder / f"{_CONTROL}.html").write_text(_CONTROL_PAGE, encoding="utf-8")
    java = shutil.which("java")
    if java is None or not VNU_JAR.exists():
        pytest.fail(
            f"the HTML checker is missing (java: {java}, {VNU_JAR}): run `make html-checker` "
            "(Debian's default-jre-headless and npm; `make test` installs both as root)"
        )
    done = subprocess.run(
        [java, "-jar", str(VNU_JAR), "--errors-only", "--format", "json", "--exit-zero-always", str(folder)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    errors = [
        f"{Path(m.get('url', '?')).name}:{m.get('lastLine', '?')}:{m.get('firstColumn', '?')}: {m['message']}"
        f"\n    {m.get('extract', '').strip()}"
        for m in json.loads(done.stderr)["messages"]
    ]
    # The control page proves the checker read this folder and reports what it finds.
    control = [e for e in errors if e.startswith(f"{_CONTROL}.html:")]
    assert any("requiredaria-describedby" in e for e in control), f"the checker missed the control page: {errors}"
    return [e for e in errors if e not in control]


# --- the patient's pages ----------------------------------------------------------------------------------


async def _collect_patient_pages(
    client: AsyncTestClient[Any], pages: Pages, broker: BrokerContext, sink: MailSink, lang: str
) -> None:
    """Every page a patient can reach, in `lang` (the first visit sets the language cookie for the rest)."""
    pages.add(f"{lang}-home", await client.get(f"/?lang={lang}"), 200, lang)
    pages.add(f"{lang}-home-filtered", await client.get("/?category=physiotherapy&city=Oslo"), 200, lang)
    pages.add(f"{lang}-home-nothing-chosen", await client.get("/send"), 400, lang)
    pages.add(f"{lang}-privacy", await client.get("/personvern"), 200, lang)
    chosen = ["fysio-oslo", "psyk-oslo"]
    query = "&".join(f"clinic={c}" for c in chosen)
    pages.add(f"{lang}-form", await client.get(f"/send?{query}"), 200, lang)

    # The form with a mistake in every field, the consent checkbox left unticked among them.
    token = await form_token(client, chosen)
    wrong = good_form(chosen, category="no-such", description="", name="", email="kari@", phone="12")
    wrong = {k: v for k, v in wrong.items() if k != "consent"} | {"birth_date": "31.02.1990"}
    pages.add(f"{lang}-form-errors", await client.post("/send", data={**wrong, "_csrf_token": token}), 422, lang)

    token = await form_token(client, chosen)
    receipt = pages.add(
        f"{lang}-receipt", await client.post("/send", data={**good_form(chosen), "_csrf_token": token}), 200, lang
    )
    token = await form_token(client, chosen)
    refused = {**good_form(chosen), "website": "http://spam.example", "_csrf_token": token}
    pages.add(f"{lang}-refused-400", await client.post("/send", data=refused), 400, lang)
    pages.add(f"{lang}-csrf-403", await client.post("/send", data=good_form(chosen)), 403, lang)
    pages.add(f"{lang}-not-found-404", await client.get("/no-such-page"), 404, lang)

    manage = f"/manage/{manage_token_of(receipt)}"
    await _deliver(broker, receipt)
    page = pages.add(f"{lang}-manage", await client.get(manage), 200, lang)
    switched = await client.post(
        f"/receipt?lang={lang}", data={"_csrf_token": csrf_of(page), "token": manage_token_of(receipt)}
    )
    pages.add(f"{lang}-receipt-switched", switched, 200, lang)
    asked = await client.post(f"{manage}/withdraw", data={"_csrf_token": csrf_of(page)})
    pages.add(f"{lang}-manage-confirm-withdraw", asked, 200, lang)
    withdrawn = await client.post(f"{manage}/withdraw/confirm", data={"_csrf_token": csrf_of(page)})
    pages.add(f"{lang}-manage-withdrawn-now", withdrawn, 200, lang)
    pages.add(f"{lang}-manage-withdrawn", await client.get(manage), 200, lang)
    pages.add(f"{lang}-manage-unknown", await client.get("/manage/not-a-token"), 404, lang)

    reference = re.search(r"RB-[0-9A-Z]{5}-[0-9A-Z]{5}", receipt)
    assert reference
    await _collect_rights_pages(client, pages, sink, lang, (manage, reference.group(0)))
    await _collect_contact_pages(client, pages, lang)


async def _collect_contact_pages(client: AsyncTestClient[Any], pages: Pages, lang: str) -> None:
    """The contact form, with every field wrong, its receipt with and without a reply address, and past its limit."""
    form = pages.add(f"{lang}-contact", await client.get(f"/kontakt?lang={lang}"), 200, lang)
    token = {"_csrf_token": csrf_of(form), "website": ""}
    wrong = {"message": "Hei\x07", "reply_email": "kari@", "about": "RB-1"}
    pages.add(f"{lang}-contact-errors", await client.post("/kontakt", data={**token, **wrong}), 422, lang)
    good = {"message": "Hvordan endrer jeg e-postadressen?\nMvh Kari", "reply_email": KARI, "about": "RB-7K2M9-Q4X8D"}
    pages.add(f"{lang}-contact-receipt", await client.post("/kontakt", data={**token, **good}), 200, lang)
    no_reply = {**good, "reply_email": "", "about": ""}
    pages.add(f"{lang}-contact-receipt-no-reply", await client.post("/kontakt", data={**token, **no_reply}), 200, lang)
    pages.add(f"{lang}-contact-refused-400", await client.post("/kontakt", data={**token, **good, "website": "x"}), 400)


async def _contact_too_many(client: AsyncTestClient[Any], pages: Pages, lang: str) -> None:
    """The form shown again past the limit (`client`'s app allows one message a minute)."""
    form = await client.get(f"/kontakt?lang={lang}")
    data = {"_csrf_token": csrf_of(form.text), "website": "", "message": "Hei", "reply_email": "", "about": ""}
    for _ in range(3):
        refused = await client.post("/kontakt", data=data)
        if refused.status_code != 200:
            break
    pages.add(f"{lang}-contact-too-many", refused, 429, lang)


async def _deliver(broker: BrokerContext, receipt: str) -> None:
    """Dispatch the referral on the receipt, so its pages show a delivered state beside a waiting one."""
    reference = re.search(r"RB-[0-9A-Z]{5}-[0-9A-Z]{5}", receipt)
    assert reference
    referral_id = await broker.pool.fetchval("SELECT id FROM referrals WHERE reference = $1", reference.group(0))
    await dispatch.dispatch_referral(broker, referral_id)


async def _collect_rights_pages(
    client: AsyncTestClient[Any], pages: Pages, sink: MailSink, lang: str, erased: tuple[str, str]
) -> None:
    start = pages.add(f"{lang}-rights", await client.get("/rights"), 200, lang)
    ask = {"_csrf_token": csrf_of(start), "channel": "email"}
    pages.add(f"{lang}-rights-errors", await client.post("/rights/code", data={**ask, "email": "kari@"}), 422, lang)
    code_page = pages.add(
        f"{lang}-rights-code", await client.post("/rights/code", data={**ask, "email": KARI}), 200, lang
    )
    code_id = _CODE_ID.search(code_page)
    assert code_id
    enter = {"_csrf_token": csrf_of(code_page), "code_id": code_id.group(1), "channel": "email"}
    body = sink.messages[-1].get_payload(decode=True)
    code = _SIX_DIGITS.search(body.decode() if isinstance(body, bytes) else "")
    assert code
    wrong = str((int(code.group(1)) + 1) % 1_000_000).zfill(6)
    pages.add(
        f"{lang}-rights-code-refused", await client.post("/rights/verify", data={**enter, "code": wrong}), 422, lang
    )
    pages.add(f"{lang}-rights-code-empty", await client.post("/rights/verify", data={**enter, "code": ""}), 422, lang)
    again = f"/rights/code?id={code_id.group(1)}&channel=email&lang={lang}"
    pages.add(f"{lang}-rights-code-again", await client.get(again), 200, lang)
    listed = pages.add(
        f"{lang}-rights-requests", await client.post("/rights/verify", data={**enter, "code": code.group(1)}), 200, lang
    )
    references = _REFERENCE.findall(listed)
    assert references, "the session lists no request"
    act = {"_csrf_token": csrf_of(listed), "reference": references[0]}
    correct = pages.add(f"{lang}-rights-correct", await client.post("/rights/correct", data=act), 200, lang)
    typed = {"name": "", "email": "kari@", "phone": "12", "birth_date": "31.02.1990"}
    errors = await client.post("/rights/correct/save", data={**act, "_csrf_token": csrf_of(correct), **typed})
    pages.add(f"{lang}-rights-correct-errors", errors, 422, lang)
    fixed = {"name": "Kari Nordmann", "email": KARI, "phone": "412 34 568", "birth_date": "17.05.1990"}
    saved = await client.post("/rights/correct/save", data={**act, **fixed})
    pages.add(f"{lang}-rights-corrected", saved, 200, lang)
    pages.add(f"{lang}-rights-export-page", await client.get("/rights/export"), 200, lang)
    pages.add(f"{lang}-rights-withdraw", await client.post("/rights/withdraw", data=act), 200, lang)
    pages.add(f"{lang}-rights-erase", await client.post("/rights/erase", data=act), 200, lang)
    pages.add(f"{lang}-rights-withdrawn", await client.post("/rights/withdraw/confirm", data=act), 200, lang)
    manage_link, erased_reference = erased  # the receipt's referral, erased so its link says so
    assert (await client.post("/rights/erase/confirm", data={**act, "reference": erased_reference})).status_code == 200
    pages.add(f"{lang}-manage-erased", await client.get(manage_link), 410, lang)
    pages.add(
        f"{lang}-rights-not-linked",
        await client.post("/rights/erase", data={**act, "reference": "RB-00000-00000"}),
        404,
        lang,
    )
    pages.add(f"{lang}-rights-signed-in", await client.get("/rights"), 200, lang)
    signed_out = await client.post("/rights/sign-out", data={"_csrf_token": act["_csrf_token"]})
    pages.add(f"{lang}-rights-signed-out", signed_out, 200, lang)
    pages.add(f"{lang}-rights-no-session", await client.get("/rights/requests"), 200, lang)
    if lang == "en":  # the second language's pass: the address's codes for the hour run out (a problem on the page)
        for _ in range(10):
            asked = await client.post("/rights/code", data={**ask, "email": KARI})
            if asked.status_code != 200:
                break
        pages.add(f"{lang}-rights-too-many-codes", asked, 429, lang)


# --- the operators' pages ---------------------------------------------------------------------------------


async def _collect_ops_pages(client: AsyncTestClient[Any], pages: Pages, broker: BrokerContext, clock: Clock) -> None:
    operator = await make_account(broker, "olga", "operator")
    auditor = await make_account(broker, "aud", "auditor")
    pages.add("ops-login", await client.get("/ops/login"), 200, "en")
    pages.add("ops-login-nb", await client.get("/ops/login", headers={"accept-language": "nb"}), 200, "nb")
    pages.add("ops-login-error", await post_login(client, operator, clock, password="wrong"), 401)
    # Something for every table and chart: deliveries in inboxes, one dead delivery, a clinic with a key to verify.
    await submit_and_dispatch(client, broker, ["fysio-oslo"])
    dead = await client.post("/api/v1/referrals", json=_api_referral(["hud-bergen"]))
    referral_id = await broker.pool.fetchval("SELECT id FROM referrals WHERE reference = $1", dead.json()["reference"])
    await broker.pool.execute(
        "UPDATE outbox SET attempts = $2 WHERE subject_id = $1", referral_id, broker.settings.dispatch_max_tries
    )
    await dispatch.dispatch_referral(broker, referral_id)

    await sign_in(client, operator, clock)
    pages.add("ops-dashboard", await client.get("/ops"), 200)
    pages.add("ops-confirm-suspend", await post_form(client, "/ops/clinics/fysio-oslo/suspend"), 200)
    norwegian = {"accept-language": "nb-NO"}
    pages.add("ops-dashboard-nb", await client.get("/ops", headers=norwegian), 200, "nb")
    pages.add("ops-audit-nb", await client.get("/ops/audit/verify", headers=norwegian), 200, "nb")
    pages.add("ops-audit", await client.get("/ops/audit?action=clinic.enrolled"), 200)
    pages.add("ops-audit-verified", await client.get("/ops/audit/verify"), 200)
    pages.add("ops-audit-error", await client.get("/ops/audit?since=yesterday"), 400)
    pages.add("ops-csrf-refused", await client.post("/ops/clinics/fysio-oslo/suspend"), 403)
    pages.add("ops-holds", await client.get("/ops/holds"), 200)
    reference = await submit_and_dispatch(client, broker, ["fysio-oslo"])
    held = await post_form(client, "/ops/holds", reference=reference, reason="legal_claim", note="sak 26-045117TVI")
    assert held.status_code == 303
    pages.add("ops-holds-nb", await client.get("/ops/holds?done=held", headers=norwegian), 200, "nb")
    refused = await post_form(client, "/ops/holds", reference=reference, reason="legal_claim", note="ola@example.no")
    pages.add("ops-holds-refused", refused, 409)

    message = await broker.pool.fetchval(
        "SELECT id FROM customer_messages WHERE can_reply ORDER BY received_at LIMIT 1"
    )
    silent = await broker.pool.fetchval("SELECT id FROM customer_messages WHERE NOT can_reply LIMIT 1")
    assert message and silent, "the patient pages' pass sent no customer-service message"
    pages.add("ops-messages", await client.get("/ops/messages"), 200)
    pages.add("ops-message", await client.get(f"/ops/messages/{message}"), 200)
    pages.add("ops-message-nb", await client.get(f"/ops/messages/{message}", headers=norwegian), 200, "nb")
    pages.add("ops-message-no-reply", await client.get(f"/ops/messages/{silent}"), 200)
    empty = await post_form(client, f"/ops/messages/{message}/answer", answer=" ")
    pages.add("ops-message-answer-error", empty, 422)
    pages.add("ops-message-unknown", await client.get(f"/ops/messages/{uuid.uuid4()}"), 404)
    closed = await post_form(client, f"/ops/messages/{message}/close")
    assert closed.status_code == 303
    pages.add("ops-messages-closed", await client.get(closed.headers["location"]), 200)
    pages.add("ops-message-closed", await client.get(f"/ops/messages/{message}"), 200)

    await sign_in(client, auditor, clock)
    pages.add("ops-dashboard-auditor", await client.get("/ops"), 200)
    pages.add("ops-holds-auditor", await client.get("/ops/holds"), 200)
    pages.add("ops-messages-auditor", await client.get("/ops/messages"), 200)
    pages.add("ops-message-role-refused", await client.get(f"/ops/messages/{message}"), 403)
    pages.add("ops-role-refused", await post_form(client, "/ops/clinics/fysio-oslo/suspend"), 403)


def _api_referral(slugs: list[str]) -> dict[str, object]:
    from tests.conftest import referral_json

    return referral_json(slugs)


# --- the tests --------------------------------------------------------------------------------------------


async def test_every_page_in_both_languages_with_and_without_errors_is_valid_html(
    make_client: ClientFactory,
    broker: BrokerContext,
    clinics: dict[str, EnrolledClinic],
    mail_sink: MailSink,  # noqa: F811
    tmp_path: Path,
) -> None:
    pages = Pages(tmp_path)
    for lang in ("nb", "nn", "en"):  # English last: its pass runs out the address's codes
        patient = await make_client(smtp_url=mail_sink.url, mail_from="kode@broker.test")
        await _collect_patient_pages(patient, pages, broker, mail_sink, lang)
        await _contact_too_many(await make_client(customer_service_rate=1), pages, lang)
    clock = Clock()
    await _collect_ops_pages(await make_client(clock=clock, submit_rate=0), pages, broker, clock)

    errors = html_errors(tmp_path)
    assert not errors, f"{len(errors)} HTML errors in {len(pages.names)} pages:\n" + "\n".join(errors)


class _Inputs(HTMLParser):
    """The attributes of every element by id."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, str | None]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.by_id[str(found["id"])] = {"<tag>": tag, **found}


@pytest.mark.parametrize("lang", ["nb", "en", "nn"])
async def test_the_unticked_consent_checkbox_stays_required_and_points_to_its_error(
    client: AsyncTestClient[Any], clinics: dict[str, EnrolledClinic], lang: str
) -> None:
    chosen = ["fysio-oslo"]
    token = await form_token(client, chosen, lang)
    unticked = {k: v for k, v in good_form(chosen).items() if k != "consent"}
    page = await client.post("/send", data={**unticked, "_csrf_token": token})
    assert page.status_code == 422
    parsed = _Inputs()
    parsed.feed(page.text)
    checkbox = parsed.by_id["f-consent"]
    assert checkbox["<tag>"] == "input" and checkbox["type"] == "checkbox"
    assert "required" in checkbox, checkbox
    assert checkbox.get("aria-describedby") == "f-consent-error", checkbox
    assert checkbox.get("aria-invalid") == "true", checkbox
    assert set(checkbox) == {"<tag>", "type", "id", "name", "required", "aria-describedby", "aria-invalid"}, checkbox
    assert parsed.by_id["f-consent-error"]["<tag>"] == "p"
