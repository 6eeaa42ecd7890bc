"""The desk against the real broker: `referral-broker serve` and `worker`, a clinic made with the clinic tool
and enrolled with the operator CLI. A patient submits over HTTP; the desk, unlocked on its page, pulls it
by itself over the network and shows it; the patient withdraws with the manage link, and the desk shows
the withdrawal at the top of the referral and in its PDF."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from desk_stand import wait_until
from referral_clinic.desk.server import open_desk
from tests.conftest import referral_json
from tests.e2e.test_pipeline_processes import PASSPHRASE, Broker, broker
from tests.e2e.test_rights_processes import Browser
from tests.patient_web.conftest import csrf_of

__all__ = ["broker"]
pytestmark = pytest.mark.e2e

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
NEED = "DESK-E2E-NEED knee pain after running"


def _wait_for(client: httpx.Client, path: str, text: str) -> str:
    """A desk page once it shows `text` (the pulls come round by themselves; a generous limit, not a speed test)."""
    wait_until(lambda: text in client.get(path).text, seconds=60)
    return client.get(path).text


def _pdf_text(path: Path) -> str:
    pdftotext = shutil.which("pdftotext")
    if pdftotext is None:
        pytest.fail("pdftotext is missing: install Debian's poppler-utils (`make system-tools` as root does)")
    if not path.exists():
        return ""
    return subprocess.run([pdftotext, str(path), "-"], capture_output=True, text=True, check=False).stdout


def test_a_referral_from_the_real_broker_reaches_the_desk_and_its_withdrawal_follows(broker: Broker) -> None:
    folder = broker.clinic("klinikk-desk")
    broker.start_worker()
    out = broker.folder / "desk-out"
    desk = open_desk(folder, out, lang="en", interval=0.3)
    desk.serve_in_background()
    try:
        client = httpx.Client(base_url=desk.guard.origin, timeout=30)
        assert client.get(desk.guard.start_url.removeprefix(desk.guard.origin)).status_code == 303
        token = CSRF.search(client.get("/").text)
        assert token is not None
        assert client.post("/unlock", data={"csrf": token.group(1), "passphrase": PASSPHRASE}).status_code == 303

        body = referral_json(["klinikk-desk"], description=NEED, name="Åse Ødegård")
        receipt = httpx.post(f"{broker.url}/api/v1/referrals", json=body, timeout=10).json()
        reference = receipt["reference"]
        inbox = _wait_for(client, "/", reference)
        assert "Åse Ødegård" in inbox and "Physiotherapy" in inbox
        page = client.get(f"/referral/{reference}").text
        assert NEED in page and "+47 41 23 45 67" in page and "17 May 1990" in page

        with Browser(broker.url) as patient:  # keeps the broker's Secure cookies over plain HTTP
            manage_path = receipt["manage_url"].removeprefix(broker.url)
            manage = patient.get(manage_path)
            asked = patient.post(f"{manage_path}/withdraw", data={"_csrf_token": csrf_of(manage.text)})
            assert asked.status_code == 200 and f'action="{manage_path}/withdraw/confirm"' in asked.text  # confirm step
            withdrawn = patient.post(f"{manage_path}/withdraw/confirm", data={"_csrf_token": csrf_of(asked.text)})
            assert withdrawn.status_code == 200, withdrawn.text
        page = _wait_for(client, f"/referral/{reference}", "The patient has withdrawn their consent")
        assert page.index("The patient has withdrawn their consent") < page.index(NEED)
        withdrawal = "The patient has withdrawn their consent"
        wait_until(lambda: withdrawal in _pdf_text(out / f"{reference}.pdf"), seconds=60)
    finally:
        desk.stop()


def test_the_desk_waiting_on_the_real_broker_files_what_arrives_and_its_page_is_told(broker: Broker) -> None:
    """The desk's default: it long-polls the real broker (which holds the request), files what the long poll
    brought, and a page waiting on the desk's /changes is answered (decisions 0137, 0138; that the long poll's
    page is filed without a second listing is tested against the stand-in in clinic/tests/test_watch_long_poll.py)."""
    folder = broker.clinic("klinikk-desk")
    broker.start_worker()
    out = broker.folder / "desk-out"
    desk = open_desk(folder, out, lang="en")  # no --interval: the long poll
    desk.serve_in_background()
    try:
        client = httpx.Client(base_url=desk.guard.origin, timeout=60)
        assert client.get(desk.guard.start_url.removeprefix(desk.guard.origin)).status_code == 303
        token = CSRF.search(client.get("/").text)
        assert token is not None
        assert client.post("/unlock", data={"csrf": token.group(1), "passphrase": PASSPHRASE}).status_code == 303
        wait_until(lambda: desk.front.status.at is not None and not desk.front.status.running, seconds=60)
        seen = int(client.get("/").text.split('data-generation="', 1)[1].split('"', 1)[0])

        body = referral_json(["klinikk-desk"], description=NEED, name="Åse Ødegård")
        reference = httpx.post(f"{broker.url}/api/v1/referrals", json=body, timeout=10).json()["reference"]
        told = client.get("/changes", params={"seen": seen})  # held until the desk's loop has filed something
        assert told.status_code == 200 and told.json()["generation"] > seen
        assert (out / f"{reference}.json").exists()
        assert reference in client.get("/").text
    finally:
        desk.stop()
