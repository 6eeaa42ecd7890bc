"""The operator's side through the real programs and a real browser: `referral-broker serve` and `worker`,
an account made with `referral-broker operator create`, clinics made with `referral-clinic` and enrolled
with the operator CLI, and headless Debian Chromium signing in through the login page.

The dashboard is photographed into `test-artifacts/screenshots/ops-dashboard.png`. The brute-force limit
is checked over real sockets from two loopback addresses: guessing from one does not lock out the other.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pyotp
import pytest
from playwright.async_api import Browser, expect

from tests.browser.conftest import SCREENSHOTS, assert_accessible
from tests.conftest import Servers
from tests.e2e.test_pipeline_processes import Broker
from tests.ops.notice_sinks import MailSink
from tests.processes import Program, program, run, wait_for_http

pytestmark = pytest.mark.e2e

OPERATOR_PASSWORD = "operator password for the browser test"


@pytest.fixture
def processes(servers: Servers, clean_db: str, redis_url: str, tmp_path: Path, mail_sink: MailSink) -> Iterator[Broker]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    url = f"http://127.0.0.1:{port}"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "DATABASE_URL": clean_db,
        "REDIS_URL": redis_url,
        "REFERRAL_BROKER_KEYS_DIR": str(tmp_path / "keys"),
        "REFERRAL_BROKER_PUBLIC_URL": url,
        "REFERRAL_BROKER_JOB_TIMEOUT": "3",
        "REFERRAL_BROKER_OPERATOR_PASSWORD": OPERATOR_PASSWORD,
        "REFERRAL_BROKER_SMTP_URL": mail_sink.url,
        "REFERRAL_BROKER_MAIL_FROM": "varsel@broker.test",
        "REFERRAL_CLINIC_PASSPHRASE": "clinic passphrase for tests",
        "REFERRAL_CLINIC_KDF_PROFILE": "interactive",
    }
    run([program("referral-broker"), "keys", "init"], env)
    server = Program([program("referral-broker"), "serve", "--port", str(port)], env, tmp_path / "server.log")
    broker = Broker(url, env, tmp_path, server.start(), None, clean_db, redis_url)  # type: ignore[arg-type]
    try:
        wait_for_http(f"{url}/healthz", server)
        yield broker
    finally:
        server.stop()
        if broker.worker is not None:
            broker.worker.stop()


def _create_operator(broker: Broker, username: str) -> str:
    out = run(
        [program("referral-broker"), "operator", "create", "--username", username, "--role", "operator"], broker.env
    ).stdout
    found = re.search(r"secret: ([A-Z2-7]+)", out)
    assert found, out
    return found.group(1)


async def _sql(database_url: str, sql: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _wait_for(database_url: str, sql: str, timeout: float = 30) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + timeout
        while not await conn.fetchval(sql):
            assert time.monotonic() < deadline, f"timed out waiting for: {sql}"
            time.sleep(0.1)
    finally:
        await conn.close()


async def test_operator_signs_in_with_a_browser_and_sees_the_dashboard(
    processes: Broker, browser: Browser, mail_sink: MailSink
) -> None:
    broker = processes
    secret = _create_operator(broker, "olga")
    folders = {slug: broker.clinic(slug) for slug in ("fysio-oslo", "hud-bergen", "psyk-trondheim")}
    run([program("referral-broker"), "clinic", "set-contact", "hud-bergen", "--email", "post@hud.example"], broker.env)
    broker.start_worker()
    for clinics in (["fysio-oslo"], ["fysio-oslo", "hud-bergen"], ["hud-bergen"], ["psyk-trondheim"]):
        broker.submit(clinics)
    await _wait_for(broker.database_url, "SELECT count(*) = 5 FROM deliveries WHERE status = 'available'")
    # The worker told hud-bergen by e-mail, once for its two referrals (it has not pulled in between).
    await _wait_for(broker.database_url, "SELECT count(*) = 1 FROM clinic_notifications WHERE status = 'sent'")
    assert [m["To"] for m in mail_sink.messages] == ["post@hud.example"]
    code, output = broker.pull(folders["fysio-oslo"], broker.folder / "inbox")
    assert code == 0, output
    # One delivery the dispatch gave up on, as the dashboard shows it (the real path is tested elsewhere).
    await _sql(
        broker.database_url,
        """UPDATE deliveries SET status = 'dead', last_error = 'gave up after 8 attempts'
           WHERE id = (SELECT d.id FROM deliveries d JOIN clinics c ON c.id = d.clinic_id
                       WHERE c.slug = 'psyk-trondheim')""",
    )
    await _wait_for(broker.database_url, "SELECT count(*) > 0 FROM worker_heartbeats")

    context = await browser.new_context(viewport={"width": 1360, "height": 900})
    page = await context.new_page()
    foreign: list[str] = []
    complaints: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(broker.url) else foreign.append(r.url))
    page.on("console", lambda m: complaints.append(m.text) if "Refused" in m.text or "Policy" in m.text else None)

    await page.goto(f"{broker.url}/ops")
    await expect(page).to_have_url(f"{broker.url}/ops/login")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "ops-login.png"))
    await assert_accessible(page, "ops login")
    await page.get_by_label("Username").fill("olga")
    await page.get_by_label("Password").fill(OPERATOR_PASSWORD)
    await page.get_by_label("Code from your authenticator").fill(pyotp.TOTP(secret).now())
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{broker.url}/ops")
    await expect(page.get_by_role("heading", name="Delivery")).to_be_visible()
    await expect(page.get_by_role("row", name=re.compile("^psyk-trondheim active"))).to_contain_text("1")
    await expect(page.get_by_text("1 dead delivery:")).to_be_visible()
    await expect(page.locator("svg.chart-svg")).to_have_count(2)
    await expect(page.get_by_role("button", name="Retry")).to_be_visible()

    cookies = {c["name"]: c for c in await context.cookies()}
    session = cookies["__Host-rb-ops"]
    assert session["secure"] and session["httpOnly"] and session["sameSite"] == "Strict"

    await page.screenshot(path=str(SCREENSHOTS / "ops-dashboard.png"), full_page=True)
    await assert_accessible(page, "ops dashboard")

    await page.get_by_role("button", name="Retry").click()  # the operator acts through the page
    await expect(page.get_by_text("queued again")).to_be_visible()
    await _wait_for(
        broker.database_url,
        "SELECT count(*) = 0 FROM deliveries WHERE status <> 'available' AND status <> 'acknowledged'",
    )

    await page.get_by_role("link", name="Audit trail").click()
    await expect(page.get_by_role("cell", name="delivery.retried")).to_be_visible()
    await page.get_by_role("link", name="Check integrity").click()
    await expect(page.get_by_text("The chain is intact")).to_be_visible()
    await page.screenshot(path=str(SCREENSHOTS / "ops-audit.png"), full_page=True)
    await assert_accessible(page, "ops audit trail")

    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(f"{broker.url}/ops/login")
    await page.goto(f"{broker.url}/ops")
    await expect(page).to_have_url(f"{broker.url}/ops/login")
    assert not foreign, foreign
    assert not complaints, complaints
    await context.close()


def _login_from(address: str, url: str, username: str, password: str, code: str) -> httpx.Response:
    """A login over a real socket from `address` (any 127.x.y.z reaches the loopback server)."""
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(transport=transport, base_url=url, timeout=10) as client:
        form_page = client.get("/ops/login")
        # The CSRF cookie is Secure; over plain http the client will not keep it, so send it by hand.
        cookie = form_page.headers["set-cookie"].split(";", 1)[0]
        token = cookie.split("=", 1)[1]
        return client.post(
            "/ops/login",
            data={"username": username, "password": password, "code": code, "_csrf_token": token},
            headers={"cookie": cookie},
        )


def test_guessing_from_one_address_does_not_lock_out_the_owner_at_another(processes: Broker) -> None:
    broker = processes
    secret = _create_operator(broker, "olga")
    totp = pyotp.TOTP(secret)
    for _ in range(5):  # REFERRAL_BROKER_OPS_LOGIN_ATTEMPTS, default 5
        assert _login_from("127.0.0.1", broker.url, "olga", "a wrong guess", "000000").status_code == 401
    assert _login_from("127.0.0.1", broker.url, "olga", OPERATOR_PASSWORD, totp.now()).status_code == 429
    owner = _login_from("127.0.0.2", broker.url, "olga", OPERATOR_PASSWORD, totp.now())
    assert owner.status_code == 303 and owner.headers["location"] == "/ops"
    assert "__Host-rb-ops=" in owner.headers["set-cookie"]
