"""Control 21: every limit that is checked and then counted holds under a burst of parallel requests.

The real app runs under uvicorn on a loopback port; 40 requests leave at once (httpx, asyncio.gather) at
each limit. What was checked or sent is counted where it happened (the audit trail, the stored rows, the
dev outbox, the referrals table), not only from the answers. The app trusts 127.0.0.0/8 as its proxy, so
`X-Forwarded-For` chooses which client address each request comes from.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from referral_broker.services.context import BrokerContext
from referral_broker.services.rights import MAX_CODE_ATTEMPTS
from referral_broker.services.settings import Settings
from referral_broker.web.app import create_app
from referral_broker.web.patient.rights_access import CODE_REQUESTS_PER_CLIENT
from referral_protocol.encoding import key_id
from referral_protocol.request_signature import sign_request
from tests.conftest import EnrolledClinic, RecordingDoorbell, enrol_clinic, referral_json
from tests.ops.conftest import PASSWORD, Account, code_at, make_account
from tests.patient_web.conftest import FIXED_NOW, enrol_patient_clinics
from tests.patient_web.live_server import LiveServer

BURST = 40
#: Bursts against a limit whose check and count are only milliseconds apart, each at a fresh subject.
ROUNDS = 5
CSRF_COOKIE = "__Host-csrf"
_CODE_ID = re.compile(r'name="code_id" value="([0-9a-f-]{36})"')
_CODE = re.compile(r"er (\d{6})\.")

Fire = Callable[[], Awaitable[httpx.Response]]


@dataclasses.dataclass
class Live:
    url: str
    outbox: Path
    settings: Settings

    def sent(self) -> list[tuple[str, str]]:
        """(address, code) of each message written to the dev outbox, oldest first."""
        if not self.outbox.exists():
            return []
        messages = [p.read_text() for p in sorted(self.outbox.iterdir())]
        return [(m.split("\n", 1)[0].removeprefix("To: "), _CODE.findall(m)[0]) for m in messages]

    def sent_codes(self) -> list[str]:
        return [code for _, code in self.sent()]


StartLive = Callable[..., Live]


@pytest.fixture
def start_live(settings: Settings, tmp_path: Path) -> Iterator[StartLive]:
    """Start the real app (with changed settings or a clock) under uvicorn; every one is stopped afterwards."""
    started: list[LiveServer] = []

    def start(*, clock: Callable[[], datetime] | None = None, **changes: Any) -> Live:
        outbox = tmp_path / f"outbox-{len(started)}"
        changed = msgspec.structs.replace(
            settings, trusted_proxies=("127.0.0.0/8",), dev_outbox=outbox, smtp_url=None, **changes
        )
        app = create_app(changed, doorbell_factory=lambda s: RecordingDoorbell(), **({"clock": clock} if clock else {}))
        server = LiveServer(app).start()
        started.append(server)
        return Live(server.url, outbox, changed)

    yield start
    for server in started:
        server.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=120, follow_redirects=False) as client:
        yield client


def _fixed() -> datetime:
    return FIXED_NOW


async def _csrf(http: httpx.AsyncClient, url: str) -> str:
    """A CSRF token from a page's `Set-Cookie` (the cookie is Secure, so it is sent back by hand)."""
    page = await http.get(url)
    assert page.status_code == 200, page.text
    for header in page.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        if CSRF_COOKIE in jar:
            return jar[CSRF_COOKIE].value
    raise AssertionError("the page set no CSRF cookie")


async def _post_form(http: httpx.AsyncClient, url: str, csrf: str, client: str, **fields: str) -> httpx.Response:
    return await http.post(
        url,
        data={**fields, "_csrf_token": csrf},
        headers={"cookie": f"{CSRF_COOKIE}={csrf}", "x-forwarded-for": client},
    )


async def _burst(http: httpx.AsyncClient, live: Live, requests: list[Fire]) -> Counter[int]:
    """Send every request at once; how many answers of each status came back.

    A round of probes first opens the connections, so the burst itself arrives as nearly together as it can."""
    await asyncio.gather(*(http.get(f"{live.url}/readyz") for _ in requests))
    responses = await asyncio.gather(*(fire() for fire in requests))
    return Counter(r.status_code for r in responses)


async def _audited(broker: BrokerContext, action: str) -> list[dict[str, Any]]:
    """The details of each audit event of this action."""
    rows = await broker.pool.fetch("SELECT details::text AS d FROM audit_events WHERE action = $1", action)
    return [json.loads(r["d"]) for r in rows]


# --- operator sign-in ---------------------------------------------------------------------------


def _login(
    http: httpx.AsyncClient, live: Live, csrf: str, client: str, username: str, password: str, code: str
) -> Fire:
    return lambda: _post_form(
        http, f"{live.url}/ops/login", csrf, client, username=username, password=password, code=code
    )


async def test_forty_parallel_wrong_passwords_check_at_most_the_limit_for_one_account_and_address(
    start_live: StartLive, http: httpx.AsyncClient, broker: BrokerContext
) -> None:
    live = start_live()
    olga = await make_account(broker, "olga")
    csrf = await _csrf(http, f"{live.url}/ops/login")
    limit = live.settings.ops_login_attempts
    wrong = [_login(http, live, csrf, "203.0.113.5", "olga", f"guess number {i}", "000000") for i in range(BURST)]

    answers = await _burst(http, live, wrong)

    checked = await _audited(broker, "operator.login_failed")
    assert len(checked) == limit, f"{len(checked)} passwords were checked; the limit is {limit}"
    assert answers == Counter({401: limit, 429: BURST - limit})
    # The owner, from another address, is not locked out.
    now = datetime.now(UTC)
    owner = await _login(http, live, csrf, "198.51.100.7", "olga", PASSWORD, code_at(olga, now))()
    assert owner.status_code == 303, owner.text


async def test_forty_parallel_wrong_passwords_across_accounts_check_at_most_the_limit_for_one_address(
    start_live: StartLive, http: httpx.AsyncClient, broker: BrokerContext
) -> None:
    live = start_live()
    olga = await make_account(broker, "olga")
    csrf = await _csrf(http, f"{live.url}/ops/login")
    limit = live.settings.ops_login_attempts_per_address
    per_account = live.settings.ops_login_attempts
    # Eight accounts, each tried no more often than its own limit: only the address limit can refuse.
    names = [f"user{i % (BURST // per_account)}" for i in range(BURST)]
    wrong = [_login(http, live, csrf, "203.0.113.6", name, "a wrong guess", "000000") for name in names]

    answers = await _burst(http, live, wrong)

    checked = await _audited(broker, "operator.login_failed")
    assert len(checked) == limit, f"{len(checked)} passwords were checked from one address; the limit is {limit}"
    assert answers == Counter({401: limit, 429: BURST - limit})
    owner = await _login(http, live, csrf, "198.51.100.8", "olga", PASSWORD, code_at(olga, datetime.now(UTC)))()
    assert owner.status_code == 303, owner.text


async def test_forty_parallel_sign_ins_with_one_totp_code_open_exactly_one_session(
    start_live: StartLive, http: httpx.AsyncClient, broker: BrokerContext
) -> None:
    live = start_live()
    olga: Account = await make_account(broker, "olga")
    csrf = await _csrf(http, f"{live.url}/ops/login")
    code = code_at(olga, datetime.now(UTC))
    # Forty addresses, so no login limit stands between the code and its once-only check.
    same_code = [_login(http, live, csrf, f"198.51.100.{i + 1}", "olga", PASSWORD, code) for i in range(BURST)]

    answers = await _burst(http, live, same_code)

    assert answers[303] == 1, answers
    assert answers[401] == BURST - 1, answers
    assert await broker.pool.fetchval("SELECT count(*) FROM operator_sessions") == 1
    reasons = Counter(e["reason"] for e in await _audited(broker, "operator.login_failed"))
    assert reasons == Counter({"code already used": BURST - 1})


# --- the patient's one-time codes ---------------------------------------------------------------


def _ask_for_code(http: httpx.AsyncClient, live: Live, csrf: str, client: str, email: str) -> Fire:
    return lambda: _post_form(http, f"{live.url}/rights/code", csrf, client, channel="email", email=email)


async def test_forty_parallel_code_requests_for_one_address_send_at_most_the_hourly_limit(
    start_live: StartLive, http: httpx.AsyncClient, broker: BrokerContext
) -> None:
    live = start_live(clock=_fixed)
    limit = live.settings.rights_codes_per_hour
    csrf = await _csrf(http, f"{live.url}/rights/")
    # A check and a count a few milliseconds apart are not always overtaken in one burst, so one burst
    # goes to each of several addresses. Forty clients each time: the per-client limit must not hide this one.
    addresses = [f"person{n}@example.no" for n in range(ROUNDS)]
    for n, address in enumerate(addresses):
        asks = [_ask_for_code(http, live, csrf, f"203.0.{n}.{i + 1}", address) for i in range(BURST)]
        answers = await _burst(http, live, asks)
        sent = await broker.pool.fetchval("SELECT count(*) FROM rights_codes")
        assert sent == (n + 1) * limit, f"{sent - n * limit} codes were sent to one address; the limit is {limit}"
        assert answers == Counter({200: limit, 429: BURST - limit})

    assert sorted(Counter(to for to, _ in live.sent()).values()) == [limit] * ROUNDS
    assert len(await _audited(broker, "rights.code_limited")) == ROUNDS * (BURST - limit)


async def test_forty_parallel_code_requests_from_one_client_send_at_most_its_limit(
    start_live: StartLive, http: httpx.AsyncClient, broker: BrokerContext
) -> None:
    live = start_live(clock=_fixed)
    csrf = await _csrf(http, f"{live.url}/rights/")
    asks = [_ask_for_code(http, live, csrf, "203.0.113.50", f"person{i}@example.no") for i in range(BURST)]

    answers = await _burst(http, live, asks)

    assert len(live.sent_codes()) == CODE_REQUESTS_PER_CLIENT
    assert answers == Counter({200: CODE_REQUESTS_PER_CLIENT, 429: BURST - CODE_REQUESTS_PER_CLIENT})


async def _one_code(http: httpx.AsyncClient, live: Live, csrf: str) -> tuple[str, str]:
    """Ask for a code for Kari; its id (from the page) and the code itself (from the outbox)."""
    page = await _ask_for_code(http, live, csrf, "203.0.113.99", "kari@example.no")()
    assert page.status_code == 200, page.text
    match = _CODE_ID.search(page.text)
    assert match, "the code page has no code id"
    return match.group(1), live.sent_codes()[-1]


def _enter_code(http: httpx.AsyncClient, live: Live, csrf: str, client: str, code_id: str, code: str) -> Fire:
    return lambda: _post_form(
        http, f"{live.url}/rights/verify", csrf, client, code_id=code_id, channel="email", code=code
    )


async def test_forty_parallel_wrong_codes_are_checked_at_most_the_allowed_tries(
    start_live: StartLive, http: httpx.AsyncClient, broker: BrokerContext
) -> None:
    live = start_live(clock=_fixed)
    csrf = await _csrf(http, f"{live.url}/rights/")
    code_id, right = await _one_code(http, live, csrf)
    wrong = f"{(int(right) + 1) % 10**6:06d}"
    guesses = [_enter_code(http, live, csrf, f"203.0.113.{i + 1}", code_id, wrong) for i in range(BURST)]

    answers = await _burst(http, live, guesses)

    assert answers == Counter({422: BURST})  # each one the code page again, saying the code was refused
    assert await broker.pool.fetchval("SELECT attempts FROM rights_codes") == MAX_CODE_ATTEMPTS
    why = Counter(e["why"] for e in await _audited(broker, "rights.code_refused"))
    assert why == Counter({"wrong": MAX_CODE_ATTEMPTS, "lapsed": BURST - MAX_CODE_ATTEMPTS})
    # The code is burnt: even the right one opens nothing now.
    late = await _enter_code(http, live, csrf, "203.0.113.99", code_id, right)()
    assert late.status_code == 422
    assert await broker.pool.fetchval("SELECT count(*) FROM rights_codes WHERE session_hash IS NOT NULL") == 0


async def test_forty_parallel_entries_of_the_right_code_open_exactly_one_session(
    start_live: StartLive, http: httpx.AsyncClient, broker: BrokerContext
) -> None:
    live = start_live(clock=_fixed)
    csrf = await _csrf(http, f"{live.url}/rights/")
    code_id, right = await _one_code(http, live, csrf)
    entries = [_enter_code(http, live, csrf, f"203.0.113.{i + 1}", code_id, right) for i in range(BURST)]

    answers = await _burst(http, live, entries)

    assert answers == Counter({303: 1, 422: BURST - 1})
    assert len(await _audited(broker, "rights.session_opened")) == 1
    assert await broker.pool.fetchval("SELECT attempts FROM rights_codes") == 1


# --- submissions --------------------------------------------------------------------------------


@pytest.fixture
async def clinics(broker: BrokerContext) -> dict[str, EnrolledClinic]:
    return await enrol_patient_clinics(broker)


async def test_forty_parallel_submissions_from_one_client_accept_at_most_the_rate(
    start_live: StartLive, http: httpx.AsyncClient, broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    rate = 5
    live = start_live(clock=_fixed, submit_rate=rate)
    body = referral_json(["fysio-oslo"])

    def submit() -> Awaitable[httpx.Response]:
        return http.post(f"{live.url}/api/v1/referrals", json=body, headers={"x-forwarded-for": "203.0.113.70"})

    answers = await _burst(http, live, [submit for _ in range(BURST)])

    assert answers == Counter({201: rate, 429: BURST - rate})
    assert await broker.pool.fetchval("SELECT count(*) FROM referrals") == rate


async def test_parallel_mixed_submissions_keep_both_the_accepted_and_the_refused_limit(
    start_live: StartLive, http: httpx.AsyncClient, broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    accepted_rate, refused_rate = 5, 8
    live = start_live(clock=_fixed, submit_rate=accepted_rate, submit_refused_rate=refused_rate)
    good = referral_json(["fysio-oslo"])
    wrong = {**good, "clinics": []}
    where = {"x-forwarded-for": "203.0.113.71"}

    def submit(body: dict[str, Any]) -> Callable[[], Awaitable[httpx.Response]]:
        return lambda: http.post(f"{live.url}/api/v1/referrals", json=body, headers=where)

    answers = await _burst(http, live, [submit(good if i % 2 else wrong) for i in range(BURST)])

    stored = await broker.pool.fetchval("SELECT count(*) FROM referrals")
    assert answers[201] == stored <= accepted_rate
    assert answers[422] <= refused_rate
    assert answers[201] + answers[422] + answers[429] == BURST
    # Once the burst has settled, the places it did not use are given back: a mistake-free client can still send
    # up to the accepted limit, whatever the mistakes were.
    after = await http.post(f"{live.url}/api/v1/referrals", json=good, headers=where)
    assert after.status_code == (201 if stored < accepted_rate and answers[422] < refused_rate else 429)


async def test_forty_parallel_repeats_of_one_idempotency_key_make_one_referral(
    start_live: StartLive, http: httpx.AsyncClient, broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    live = start_live(clock=_fixed, submit_rate=0)
    body = referral_json(["fysio-oslo"])
    key = {"idempotency-key": "parallel-repeat-0001"}

    def submit() -> Awaitable[httpx.Response]:
        return http.post(f"{live.url}/api/v1/referrals", json=body, headers=key)

    answers = await _burst(http, live, [submit for _ in range(BURST)])

    assert answers == Counter({201: 1, 200: BURST - 1})
    assert await broker.pool.fetchval("SELECT count(*) FROM referrals") == 1


# --- the clinic API's replay guard --------------------------------------------------------------


async def test_forty_parallel_replays_of_one_signed_request_are_served_once(
    start_live: StartLive, http: httpx.AsyncClient, broker: BrokerContext
) -> None:
    live = start_live()
    clinic = await enrol_clinic(broker, "klinikk-a")
    path = "/api/v1/clinic/inbox?limit=10"
    signed = sign_request(
        "GET",
        live.url + path,
        {},
        None,
        key_id=key_id(clinic.secrets.signing_public),
        seed=clinic.secrets.signing_seed,
    )

    def replay() -> Awaitable[httpx.Response]:
        return http.get(live.url + path, headers=signed)

    answers = await _burst(http, live, [replay for _ in range(BURST)])

    assert answers[200] == 1, answers
    assert answers[200] + answers[401] == BURST, answers


# --- customer service ---------------------------------------------------------------------------


async def test_forty_parallel_contact_messages_from_one_client_store_at_most_the_rate(
    start_live: StartLive, http: httpx.AsyncClient, broker: BrokerContext
) -> None:
    rate = 3
    live = start_live(clock=_fixed, customer_service_rate=rate)
    csrf = await _csrf(http, f"{live.url}/kontakt")

    def send() -> Awaitable[httpx.Response]:
        return _post_form(http, f"{live.url}/kontakt", csrf, "203.0.113.80", message="Et spørsmål om tjenesten")

    answers = await _burst(http, live, [send for _ in range(BURST)])

    assert answers == Counter({200: rate, 429: BURST - rate})
    assert await broker.pool.fetchval("SELECT count(*) FROM customer_messages") == rate
    # Another client is not held back by the first one's burst.
    other = await _post_form(http, f"{live.url}/kontakt", csrf, "198.51.100.80", message="Et annet spørsmål")
    assert other.status_code == 200
