"""The canary sweep (security.md, "What a breach of the broker must not reveal"; controls 13 and 18).

Every feature is used once through the real programs (`referral-broker serve`, `worker`, the operator CLI,
`retention run`, `referral-clinic pull`) with canary strings as the patient's details: submission by the JSON
API and by the web form, dispatch, clinic notices by e-mail and signed webhook (local sinks), the clinic's
pull, the manage link (view and withdraw), the patient's rights (one-time code by e-mail, list, export,
correction, withdrawal, erasure), a customer-service message through the contact form, the operator's sign-in
and every page reachable from the dashboard (the message's own page, the one place meant to show it, is
checked to show it and not searched), /metrics, and the retention run. Then no canary may appear in a
`pg_dump`, in any Redis value (taken while jobs were queued, while they ran, and at the end: the job
payloads), in any log line of any program, on any operator page, in the metrics, or in any notice to a clinic.
Only the patient (the receipt, the rights pages, the code e-mail) and the chosen clinics (the decrypted files)
ever see them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pyotp
import pytest

from tests.conftest import Servers
from tests.e2e.test_pipeline_processes import Broker, _pg_dump, _redis_values, started_broker
from tests.e2e.test_rights_processes import _CODE, _CODE_ID, Browser, _act, _csrf
from tests.ops.notice_sinks import MailSink, WebhookReceiver, mail_sink, webhook  # noqa: F401 - fixtures
from tests.processes import program, run, wait_for_value

pytestmark = pytest.mark.e2e

API_PATIENT = {
    "name": "Qxcanary Apinordmann",
    "email": "qx.canary.api@example.no",
    "phone": "+4741239872",
    "description": "QXCANARY-API-NEED-5C1 stiff neck after skiing",
}
FORM_PATIENT = {
    "name": "Qxcanary Formnordmann",
    "email": "qx.canary.form@example.no",
    "phone": "412 39 873",
    "description": "QXCANARY-FORM-NEED-9E2 sore wrist from typing",
}
CORRECTED_NAME = "Qxcanary Rettetnavn"
CONTACT_MESSAGE = {
    "message": "QXCANARY-CONTACT-MSG-3F7 hvordan endrer jeg navnet?",
    "reply_email": "qx.canary.kontakt@example.no",
}
CANARIES = [
    *CONTACT_MESSAGE.values(),
    *API_PATIENT.values(),
    *FORM_PATIENT.values(),
    "+4741239873",  # the form's phone as the broker normalises it
    "41239872",
    "41239873",
    CORRECTED_NAME,
]
OPERATOR_PASSWORD = "a long operator password for the sweep"


class _Inputs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hidden: dict[str, str] = {}
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "input" and a.get("type") == "hidden" and a.get("name"):
            self.hidden[a["name"] or ""] = a.get("value") or ""
        if tag == "a" and a.get("href"):
            self.links.append(a["href"] or "")


def _parsed(html: str) -> _Inputs:
    parser = _Inputs()
    parser.feed(html)
    return parser


@pytest.fixture
def stack(
    servers: Servers,
    clean_db: str,
    redis_url: str,
    tmp_path: Path,
    mail_sink: MailSink,  # noqa: F811
) -> Iterator[Broker]:
    with started_broker(clean_db, redis_url, tmp_path, {"REFERRAL_BROKER_SMTP_URL": mail_sink.url}) as b:
        yield b


def _sign_in(browser: Browser, sink: MailSink, email: str) -> None:
    """Ask for a code by e-mail and enter it; other mail (clinic notices) may arrive meanwhile."""
    start = browser.get("/rights")
    before = len(sink.messages)
    asked = browser.post("/rights/code", data={"_csrf_token": _csrf(start.text), "channel": "email", "email": email})
    assert asked.status_code == 200, asked.text
    [mail] = [m for m in sink.messages[before:] if m["To"] == email]
    body = mail.get_payload(decode=True)
    assert isinstance(body, bytes)
    code, code_id = _CODE.search(body.decode()), _CODE_ID.search(asked.text)
    assert code and code_id
    entered = browser.post(
        "/rights/verify",
        data={"_csrf_token": _csrf(asked.text), "code_id": code_id.group(1), "channel": "email", "code": code.group(1)},
    )
    assert entered.status_code == 303, entered.text


def _cli(stack: Broker, *args: str, **env: str) -> str:
    result = run([program("referral-broker"), *args], {**stack.env, **env})
    return result.stdout + result.stderr


async def test_no_submitted_string_is_kept_logged_shown_or_sent_anywhere_but_to_the_patient_and_clinics(
    stack: Broker,
    mail_sink: MailSink,  # noqa: F811
    webhook: WebhookReceiver,  # noqa: F811
) -> None:
    seen: dict[str, str] = {}  # where → text, searched at the end
    a, b = stack.clinic("klinikk-a"), stack.clinic("klinikk-b")
    seen["cli: set-contact"] = _cli(
        stack, "clinic", "set-contact", "klinikk-a", "--email", "post@klinikk-a.no", "--webhook", webhook.url
    )
    created = _cli(
        stack,
        "operator",
        "create",
        "--username",
        "sweeper",
        "--role",
        "operator",
        REFERRAL_BROKER_OPERATOR_PASSWORD=OPERATOR_PASSWORD,
    )
    totp_secret = re.search(r"secret: (\S+)", created)
    assert totp_secret, created

    # Submissions, with no worker yet: the jobs wait in Redis.
    api_reference = stack.submit(["klinikk-a", "klinikk-b"], **API_PATIENT)
    with Browser(stack.url) as browser:
        form_page = browser.get("/send?clinic=klinikk-a")
        assert form_page.status_code == 200, form_page.text
        fields = {
            **_parsed(form_page.text).hidden,
            "clinic": "klinikk-a",
            "category": "physiotherapy",
            "birth_date": "17.05.1990",
            "consent": "on",
            "consent_version": "2026-11-01",
            "website": "",
            **FORM_PATIENT,
        }
        receipt = browser.post("/send", data=fields)
        assert receipt.status_code == 200, receipt.text
        manage = re.search(r'href="[^"]*(/manage/[A-Za-z0-9_-]+)"', receipt.text)
        assert manage, "the receipt has no manage link"
        # A customer-service message through the contact form (decrypted only on its own /ops page).
        contact = browser.get("/kontakt")
        sent = browser.post(
            "/kontakt", data={"_csrf_token": _csrf(contact.text), "website": "", "about": "", **CONTACT_MESSAGE}
        )
        assert sent.status_code == 200 and "KS-" in sent.text, sent.text
    seen["redis, jobs queued"] = _redis_values(stack.redis_url)

    stack.start_worker()
    await wait_for_value(stack.database_url, "SELECT count(*) FROM deliveries WHERE status = 'available'", 3)
    await wait_for_value(
        stack.database_url,
        "SELECT count(*) FROM clinic_notifications WHERE email_sent_at IS NOT NULL AND webhook_sent_at IS NOT NULL",
        1,
    )
    seen["redis, jobs run"] = _redis_values(stack.redis_url)
    assert mail_sink.messages and webhook.received, "the clinic was not told"

    code, output = stack.pull(a, stack.folder / "inbox-a")
    assert code == 0, output
    received = (stack.folder / "inbox-a" / f"{api_reference}.json").read_text()
    assert API_PATIENT["description"] in received  # the chosen clinic, and only it, reads the canaries

    with Browser(stack.url) as browser:
        # The manage link: view, then withdraw (the form referral waits in klinikk-a's inbox no more).
        page = browser.get(manage.group(1))
        assert page.status_code == 200
        withdrawn = browser.post(f"{manage.group(1)}/withdraw", data={"_csrf_token": _csrf(page.text)})
        assert withdrawn.status_code == 200, withdrawn.text

        # The patient's rights, signed in with a code e-mailed to the API referral's address.
        _sign_in(browser, mail_sink, API_PATIENT["email"])
        assert browser.get("/rights/export.json").status_code == 200
        _act(
            browser,
            "/rights/correct/save",
            reference=api_reference,
            name=CORRECTED_NAME,
            email=API_PATIENT["email"],
            phone=API_PATIENT["phone"],
            birth_date="17.05.1990",
        )
        _act(browser, "/rights/withdraw/confirm", reference=api_reference)
        _act(browser, "/rights/erase/confirm", reference=api_reference)
    for folder, inbox in ((a, "inbox-a"), (b, "inbox-b")):
        code, output = stack.pull(folder, stack.folder / inbox)  # the notices reach the clinics
        assert code == 0, output

    # The operator's side: sign in, then every page reachable from the dashboard, and /metrics.
    with Browser(stack.url) as ops:
        login = ops.get("/ops/login")
        signed_in = ops.post(
            "/ops/login",
            data={
                "_csrf_token": _csrf(login.text),
                "username": "sweeper",
                "password": OPERATOR_PASSWORD,
                "code": pyotp.TOTP(totp_secret.group(1)).now(),
            },
        )
        assert signed_in.status_code == 303, signed_in.text
        to_visit, visited, opened_message = ["/ops"], set(), False
        while to_visit and len(visited) < 40:
            path = to_visit.pop()
            if path in visited:
                continue
            visited.add(path)
            page = ops.get(path)
            assert page.status_code == 200, (path, page.status_code)
            if re.fullmatch(r"/ops/messages/[0-9a-f-]{36}", path):  # the one page meant to show a message
                assert CONTACT_MESSAGE["message"] in page.text
                opened_message = True
                continue
            seen[f"operator page {path}"] = page.text
            for link in _parsed(page.text).links:
                if link.startswith("/ops") and "logout" not in link:
                    to_visit.append(link.split("#")[0])
        assert {"/ops", "/ops/audit", "/ops/messages"} <= visited and opened_message, visited
        seen["metrics"] = ops.get("/metrics").text
        assert "referral_broker_submissions_total" in seen["metrics"]

    later = (datetime.now(UTC) + timedelta(days=200)).isoformat()
    seen["cli: retention run"] = _cli(stack, "retention", "run", "--now", later)
    seen["cli: audit verify"] = _cli(stack, "audit", "verify")

    stack.worker.stop()
    stack.server.stop()
    seen["redis, at the end"] = _redis_values(stack.redis_url)
    seen["database dump"] = _pg_dump(stack.database_url)
    seen["server log"] = stack.server.output()
    seen["worker log"] = stack.worker.output()
    seen["clinic tool output"] = (stack.folder / "clinic.log").read_text()
    to_patients = {API_PATIENT["email"], FORM_PATIENT["email"]}
    for i, raw in enumerate(mail_sink.raw):
        message = mail_sink.messages[i]
        if message["To"] not in to_patients:  # the code e-mail goes to the patient: theirs to see
            seen[f"e-mail to {message['To']}"] = raw.decode(errors="replace")
    assert any(k.startswith("e-mail to post@klinikk-a.no") for k in seen), "no notice e-mail to the clinic"
    for i, hook in enumerate(webhook.received):
        seen[f"webhook {i}"] = hook.path + repr(hook.headers) + hook.body.decode(errors="replace")

    assert "referrals" in seen["database dump"] and len(seen) > 10
    leaks = [(canary, where) for where, text in seen.items() for canary in CANARIES if canary.lower() in text.lower()]
    assert leaks == [], leaks
