"""The patient's rights end to end through the real programs (issue 4).

`referral-broker serve` and `worker` against this run's PostgreSQL and Redis; the one-time code is
e-mailed to a local SMTP sink (aiosmtpd) and read from there; the patient uses the rights pages over
HTTP like a browser (cookies, CSRF fields); the clinics receive the sealed notices with the real
`referral-clinic pull`; the database is then checked for what remains.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import msgspec
import pytest

from referral_broker.crypto.broker_keys import load_keys
from referral_protocol.referral import ContactCopy
from tests.conftest import Servers
from tests.e2e.test_pipeline_processes import Broker, _pg_dump, started_broker
from tests.ops.notice_sinks import MailSink, mail_sink  # noqa: F401 - the fixture
from tests.processes import wait_for_value

pytestmark = pytest.mark.e2e

EMAIL = "zyx.rights.canary@example.no"
NAME = "Zyxrights Nordmann"
NEW_NAME = "Zyxrights Nordmann-Berg"
NEED = "CANARY-RIGHTS-NEED-4B1 pain in the left shoulder"
_CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')
_CODE_ID = re.compile(r'name="code_id" value="([^"]+)"')
_CODE = re.compile(r"\b(\d{6})\b")


@pytest.fixture
def stack(servers: Servers, clean_db: str, redis_url: str, tmp_path: Path, mail_sink: MailSink) -> Iterator[Broker]:  # noqa: F811
    with started_broker(clean_db, redis_url, tmp_path, {"REFERRAL_BROKER_SMTP_URL": mail_sink.url}) as b:
        yield b


class Browser:
    """Cookies kept the way a browser keeps them for http://127.0.0.1, a secure context: the broker's
    `__Host-` cookies are Secure, which httpx would otherwise never send over plain HTTP."""

    def __init__(self, base_url: str) -> None:
        self._client = httpx.Client(base_url=base_url, timeout=15)
        self.cookies: dict[str, str] = {}

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def _send(self, method: str, path: str, data: dict[str, str] | None = None) -> httpx.Response:
        headers = {"cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}
        response = self._client.request(method, path, data=data, headers=headers)
        for cookie in response.cookies.jar:
            if cookie.value and not cookie.is_expired():
                self.cookies[cookie.name] = cookie.value
            else:
                self.cookies.pop(cookie.name, None)
        return response

    def get(self, path: str) -> httpx.Response:
        return self._send("GET", path)

    def post(self, path: str, data: dict[str, str]) -> httpx.Response:
        return self._send("POST", path, data)


def _csrf(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def _sign_in(browser: Browser, sink: MailSink, email: str) -> None:
    start = browser.get("/rights")
    assert start.status_code == 200
    before = len(sink.messages)
    asked = browser.post("/rights/code", data={"_csrf_token": _csrf(start.text), "channel": "email", "email": email})
    assert asked.status_code == 200, asked.text
    assert email not in str(asked.url)
    [mail] = sink.messages[before:]
    assert mail["To"] == email
    body = mail.get_payload(decode=True)
    assert isinstance(body, bytes)
    match = _CODE.search(body.decode())
    assert match, "the e-mail holds no code"
    code_id = _CODE_ID.search(asked.text)
    assert code_id
    entered = browser.post(
        "/rights/verify",
        data={
            "_csrf_token": _csrf(asked.text),
            "code_id": code_id.group(1),
            "channel": "email",
            "code": match.group(1),
        },
    )
    assert entered.status_code == 303, entered.text
    assert entered.headers["location"].endswith("/rights/requests")


def _act(browser: Browser, path: str, **fields: str) -> httpx.Response:
    page = browser.get("/rights/requests")
    assert page.status_code == 200
    response = browser.post(path, data={"_csrf_token": _csrf(page.text), **fields})
    assert response.status_code == 200, response.text
    return response


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.json"))


async def test_each_right_is_carried_out_and_the_clinics_are_told(stack: Broker, mail_sink: MailSink) -> None:  # noqa: F811
    a, b = stack.clinic("klinikk-a"), stack.clinic("klinikk-b")
    stack.start_worker()
    both = stack.submit(["klinikk-a", "klinikk-b"], name=NAME, email=EMAIL, description=NEED)
    only_a = stack.submit(["klinikk-a"], name=NAME, email=EMAIL, description=NEED)
    someone_else = stack.submit(["klinikk-b"], email="ola@example.no", phone="913 45 678")
    await wait_for_value(stack.database_url, "SELECT count(*) FROM deliveries WHERE status = 'available'", 4)
    inbox_a, inbox_b = stack.folder / "inbox-a", stack.folder / "inbox-b"
    code, output = stack.pull(a, inbox_a)  # klinikk-a has both of hers; klinikk-b has not pulled yet
    assert code == 0, output
    assert _files(inbox_a) == sorted([f"{both}.json", f"{only_a}.json"])

    with Browser(stack.url) as browser:
        _sign_in(browser, mail_sink, EMAIL)
        listing = browser.get("/rights/requests").text
        assert both in listing and only_a in listing and someone_else not in listing
        assert NEED not in listing

        # Access and portability.
        exported = browser.get("/rights/export.json")
        assert exported.status_code == 200
        assert "attachment" in exported.headers["content-disposition"]
        document = msgspec.json.decode(exported.content)
        assert sorted(r["reference"] for r in document["referrals"]) == sorted([both, only_a])
        assert {r["contact_details"]["email"] for r in document["referrals"]} == {EMAIL}
        assert NEED not in exported.text

        # Rectification: klinikk-a holds the referral, so it gets a correction notice.
        corrected = _act(
            browser,
            "/rights/correct/save",
            reference=only_a,
            name=NEW_NAME,
            email=EMAIL,
            phone="412 34 567",
            birth_date="17.05.1990",
        )
        assert NEW_NAME in corrected.text or "Klinikk klinikk-a" in corrected.text
        code, output = stack.pull(a, inbox_a)
        assert code == 0, output
        [correction] = [n for n in _files(inbox_a) if ".correction-" in n]
        assert correction.startswith(f"{only_a}.correction-")
        notice = msgspec.json.decode((inbox_a / correction).read_bytes())
        assert notice["patient"]["name"] == NEW_NAME

        # Withdrawal of the referral to both: klinikk-b had not fetched it; its copy is stopped, nobody tells it.
        _act(browser, "/rights/withdraw/confirm", reference=both)
        # Erasure of the corrected one.
        _act(browser, "/rights/erase/confirm", reference=only_a)
        after = browser.get("/rights/requests").text
        assert only_a not in after and both in after

        browser.post("/rights/sign-out", data={"_csrf_token": _csrf(after)})
        assert browser.get("/rights/requests").status_code in (302, 303)

    code, output = stack.pull(a, inbox_a)
    assert code == 0, output
    code, output = stack.pull(b, inbox_b)
    assert code == 0, output
    names_a, names_b = _files(inbox_a), _files(inbox_b)
    assert any(n.startswith(f"{both}.withdrawal-") for n in names_a)
    assert any(n.startswith(f"{only_a}.erasure-") for n in names_a)
    # klinikk-b never received the withdrawn referral, so it is not told of the withdrawal (decision 0139).
    assert f"{both}.json" not in names_b and f"{someone_else}.json" in names_b
    assert not any(n.startswith(f"{both}.") for n in names_b)

    # What remains in the database.
    conn = await asyncpg.connect(stack.database_url)
    try:
        erased = await conn.fetchrow(
            "SELECT * FROM referrals WHERE erased_at IS NOT NULL",
        )
        for column in ("contact_ct", "email_bidx", "phone_bidx", "manage_token_hash", "reference"):
            assert erased[column] is None, column
        withdrawn = await conn.fetchrow("SELECT * FROM referrals WHERE reference = $1", both)
        assert withdrawn["withdrawn_at"] is not None
        keys = load_keys(Path(stack.env["REFERRAL_BROKER_KEYS_DIR"]))
        copy = msgspec.json.decode(
            keys.vault.decrypt(withdrawn["contact_ct"], bound_to=withdrawn["id"].bytes), type=ContactCopy
        )
        assert copy.email == EMAIL  # withdrawal stops deliveries; the copy stays until anonymisation
        notices = await conn.fetch("SELECT kind, status, envelope FROM clinic_notices ORDER BY created_at")
        assert sorted(n["kind"] for n in notices) == ["correction", "erasure", "withdrawal"]  # not klinikk-b
        assert {(n["status"], n["envelope"]) for n in notices} == {("acknowledged", None)}
        assert await conn.fetchval("SELECT count(*) FROM rights_codes WHERE session_expires_at > now()") == 0
        actions = [r["action"] for r in await conn.fetch("SELECT action FROM audit_events ORDER BY id")]
        for action in ("rights.code_sent", "rights.session_opened", "rights.exported", "rights.rectified"):
            assert action in actions
        assert "rights.erased" in actions and "referral.withdrawn" in actions
    finally:
        await conn.close()

    # No readable contact detail or code in the dump or the logs.
    dump = _pg_dump(stack.database_url)
    logs = "".join((stack.folder / f).read_text() for f in ("server.log", "worker.log"))
    for secret in (EMAIL, NAME, NEW_NAME, NEED, "zyx.rights"):
        assert secret not in dump
        assert secret not in logs
