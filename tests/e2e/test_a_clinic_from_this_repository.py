"""Issue 18's "done when": a clinic, from this repository alone, installs the tool into a clean virtual
environment, enrols, receives a referral in the desk, reads and prints it, and sees a withdrawal arrive.

The protocol and clinic wheels are built from this repository and installed with pip into a fresh virtual
environment (`tests/clinic_wheels.py`; the guide's `pipx install ./clinic --preinstall ./protocol` builds the
same wheels). THAT environment's `referral-clinic` makes the clinic and runs the desk as its own process; the
operator enrols the clinic with the real broker CLI; the real `serve` and `worker` carry a patient's referral
and withdrawal. Debian's Chromium, through Playwright, is the receptionist's browser and the patient's.
Screenshots of every step go to CLINIC_E2E_SCREENSHOTS (default test-artifacts/clinic-from-repository).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from desk_stand import wait_until
from devstack.programs import Program
from tests.browser.conftest import browser
from tests.clinic_wheels import clean_env, install_clinic_from_wheels, venv_program
from tests.conftest import referral_json
from tests.e2e.test_pipeline_processes import PASSPHRASE, Broker, broker

__all__ = ["broker", "browser"]
pytestmark = pytest.mark.e2e

SCREENSHOTS = Path(
    os.environ.get(
        "CLINIC_E2E_SCREENSHOTS", Path(__file__).resolve().parents[2] / "test-artifacts" / "clinic-from-repository"
    )
)
ARRIVAL = 60_000  # ms: generous room for the desk's own pull (1 s) and the page's refresh (10 s); not a speed test
NEED = "DONE-WHEN-NEED knee pain after running"
WITHDRAWN = "The patient has withdrawn their consent"
LINK = re.compile(r"open this link once, on this computer: (\S+)")


async def _shot(page: Page, step: int, label: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{step:02d}-{label}.png"), full_page=True)


def _pdf_text(path: Path) -> str:
    if not path.exists():
        return ""
    return subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=False).stdout


def _desk_link(desk: Program) -> str:
    """The one-time link the desk prints when it has started."""
    wait_until(lambda: LINK.search(desk.output()) is not None or not desk.running(), seconds=60)
    found = LINK.search(desk.output())
    assert found is not None, f"the desk printed no link:\n{desk.output()}"
    return found.group(1)


async def test_a_clinic_installs_from_this_repository_enrols_reads_prints_and_sees_a_withdrawal(
    broker: Broker, browser: Browser, tmp_path: Path
) -> None:
    # 1. The tool, from this repository's wheels, into a clean virtual environment.
    venv = install_clinic_from_wheels(tmp_path / "install")
    tool = str(venv_program(venv, "referral-clinic"))
    tool_env = clean_env(
        HOME=str(tmp_path),
        REFERRAL_CLINIC_PASSPHRASE=PASSPHRASE,
        REFERRAL_CLINIC_KDF_PROFILE="interactive",
    )

    # 2. THAT tool makes the clinic; the operator enrols it and verifies the fingerprint it prints.
    folder = broker.clinic("klinikk-ferdig", tool=tool, tool_env=tool_env)
    broker.start_worker()

    # 3. THAT tool's desk, as its own process, prints its one-time link.
    out = tmp_path / "referrals"
    desk_env = {k: v for k, v in tool_env.items() if k != "REFERRAL_CLINIC_PASSPHRASE"}  # typed on the page
    args = [tool, "desk", "--dir", str(folder), "--out", str(out), "--no-browser", "--lang", "en", "--interval", "1"]
    desk = Program(args, desk_env, tmp_path / "desk.log").start()
    try:
        link = _desk_link(desk)
        context = await browser.new_context(locale="en-GB", viewport={"width": 1280, "height": 800})
        page = await context.new_page()

        await page.goto(link)
        await expect(page.get_by_role("heading", name="Unlock the desk")).to_be_visible()
        await _shot(page, 1, "desk-unlock")
        await page.get_by_label("Passphrase").fill(PASSPHRASE)
        await page.get_by_role("button", name="Unlock").click()
        await expect(page.get_by_role("heading", name="Referrals")).to_be_visible()
        await _shot(page, 2, "desk-inbox-unlocked")

        # 4. A patient submits through the broker's public JSON API.
        body = referral_json(["klinikk-ferdig"], description=NEED, name="Åse Ødegård")
        response = httpx.post(f"{broker.url}/api/v1/referrals", json=body, timeout=10)
        assert response.status_code == 201, response.text
        receipt = response.json()
        reference = receipt["reference"]

        # 5. It appears in the desk's inbox by itself.
        row = page.get_by_role("row", name=reference)
        await expect(row).to_be_visible(timeout=ARRIVAL)
        await expect(row).to_contain_text("Åse Ødegård")
        await expect(row).to_contain_text("Physiotherapy")
        await _shot(page, 3, "desk-referral-arrived")

        # 6. Opened and read: name, need and phone are shown.
        await page.get_by_role("link", name=reference).click()
        await expect(page.get_by_role("heading", name=f"Referral {reference}")).to_be_visible()
        await expect(page.get_by_text(NEED)).to_be_visible()
        await expect(page.get_by_text("+47 41 23 45 67")).to_be_visible()
        await expect(page.locator("main")).to_contain_text("Åse Ødegård")
        await _shot(page, 4, "desk-referral-read")

        # 7. Printed from the print view; the desk's own PDF lies beside the referral's JSON.
        await page.get_by_role("link", name="Print view").click()
        await expect(page.get_by_role("heading", name=f"Referral {reference}")).to_be_visible()
        await _shot(page, 5, "desk-print-view")
        await page.emulate_media(media="print")
        printed = SCREENSHOTS / "05-desk-print-view-a4.pdf"
        await page.pdf(path=str(printed), format="A4", prefer_css_page_size=True)
        await page.emulate_media(media="screen")
        printed_text = _pdf_text(printed)
        assert NEED in printed_text and reference in printed_text and "+47 41 23 45 67" in printed_text
        subprocess.run(["pdftoppm", "-r", "60", "-png", str(printed), str(printed.with_suffix(""))], check=True)
        assert list(out.glob(f"{reference}*.json"))
        wait_until(lambda: (out / f"{reference}.pdf").exists(), seconds=60)
        await page.get_by_role("link", name="Back to the referral").click()

        # 8. The patient withdraws with the manage link from their receipt, in their own browser.
        patient = await browser.new_context(locale="en-GB", viewport={"width": 1280, "height": 800})
        patient_page = await patient.new_page()
        await patient_page.goto(receipt["manage_url"])
        await _shot(patient_page, 6, "patient-manage")
        await patient_page.locator("#withdraw-button").click()
        await patient_page.get_by_role("button", name="Yes, withdraw consent").click()  # the confirm step
        await expect(patient_page.locator(".confirmation h2")).to_have_text("Consent has been withdrawn")
        await _shot(patient_page, 7, "patient-withdrawn")
        await patient.close()

        # 9. The withdrawal arrives at the top of the referral's page by itself.
        banner = page.get_by_role("alert").filter(has_text=WITHDRAWN)
        await expect(banner).to_be_visible(timeout=ARRIVAL)
        banner_box, need_box = await banner.bounding_box(), await page.get_by_text(NEED).bounding_box()
        assert banner_box is not None and need_box is not None and banner_box["y"] < need_box["y"]
        await _shot(page, 8, "desk-withdrawal-arrived")
        await context.close()
        # The desk's own PDF follows the withdrawal too.
        wait_until(lambda: WITHDRAWN in _pdf_text(out / f"{reference}.pdf"), seconds=60)
    finally:
        desk.stop()
    assert desk.process is not None and desk.process.returncode == 0, desk.output()
    # The desk's log says what it did, never who the patient is or what they need.
    assert "Ødegård" not in desk.output() and "DONE-WHEN-NEED" not in desk.output()
