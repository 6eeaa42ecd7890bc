"""Headless Debian Chromium driven by Playwright against the real app, with axe-core and screenshots.

Chromium comes from Debian's package (`make test` installs it when missing, as root); Playwright's own
browser downloads are never used. axe-core's script ships inside `axe-playwright-python`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page, async_playwright

from referral_broker.services.context import BrokerContext
from referral_broker.services.settings import Settings
from referral_broker.web.app import create_app
from tests.conftest import EnrolledClinic, RecordingDoorbell
from tests.patient_web.conftest import enrol_patient_clinics
from tests.patient_web.live_server import LiveServer, free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}

CLINIC_NAMES = {
    "fysio-oslo": "Majorstuen Fysioterapi",
    "psyk-oslo": "Oslo Samtalesenter",
    "hud-bergen": "Bryggen Hudklinikk",
    "fysio-bergen": "Fana Fysio og Trening",
}


@pytest.fixture
def live(settings: Settings, named_clinics: dict[str, EnrolledClinic]) -> Iterator[LiveServer]:
    port = free_port()
    app = create_app(
        msgspec.structs.replace(settings, public_url=f"http://127.0.0.1:{port}", submit_rate=100),
        doorbell_factory=lambda s: RecordingDoorbell(),
    )
    server = LiveServer(app, port=port).start()
    yield server
    server.stop()


@pytest.fixture
async def named_clinics(broker: BrokerContext) -> dict[str, EnrolledClinic]:
    """The page tests' clinics, with names a person would give them (for the screenshots)."""
    clinics = await enrol_patient_clinics(broker)
    for slug, name in CLINIC_NAMES.items():
        await broker.pool.execute("UPDATE clinics SET name = $2 WHERE slug = $1", slug, name)
    return clinics


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium package (`apt-get install chromium`, or `make test` "
            "as root, which installs it)"
        )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@dataclasses.dataclass
class Visit:
    """One visitor's tab: it records every request, every refusal by the CSP, and every broken resource.

    Pages themselves may answer 4xx (a form with mistakes is 422); the resources they load may not."""

    page: Page
    origin: str
    name: str
    requests: list[str] = dataclasses.field(default_factory=list)
    console: list[str] = dataclasses.field(default_factory=list)
    step: int = 0

    def __post_init__(self) -> None:
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", self._on_console)
        self.page.on("response", self._on_response)

    def _on_console(self, message: Any) -> None:
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            self.console.append(message.text)

    def _on_response(self, response: Any) -> None:
        if response.request.resource_type != "document" and response.status >= 400:
            self.console.append(f"{response.status} for {response.url}")

    async def check(self, label: str) -> None:
        """At each step: axe finds nothing serious, nothing left the origin, no CSP complaint; screenshots."""
        self.step += 1
        await assert_accessible(self.page, f"{self.name} {label}")
        foreign = [u for u in self.requests if not u.startswith(self.origin)]
        assert not foreign, f"requests to other origins: {foreign}"
        assert not self.console, f"CSP refusals or broken resources at {label}: {self.console}"
        await screenshots(self.page, f"{self.name}-{self.step:02d}-{label}")


async def assert_accessible(page: Page, where: str) -> None:
    results = await Axe().run(page)
    bad = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    summary = "\n".join(f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}" for v in bad)
    assert not bad, f"axe on {where}:\n{summary}"


async def screenshots(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    size: Any = page.viewport_size
    for label, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
        await page.set_viewport_size(viewport)  # type: ignore[arg-type]
        await page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True)
    await page.set_viewport_size(size)
