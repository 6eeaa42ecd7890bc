"""A desk opened on a test clinic folder, pulling from the broker stand-in, reached over real loopback HTTP."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from clinic_folder import PASSPHRASE, Clinic
from referral_clinic.desk.server import RunningDesk, open_desk

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class DeskUnderTest:
    running: RunningDesk
    clinic: Clinic

    @property
    def origin(self) -> str:
        return self.running.guard.origin

    def browser(self) -> httpx.Client:
        """A client that has used the start link: it holds the desk's cookie."""
        client = httpx.Client(base_url=self.origin, follow_redirects=False, timeout=30)
        answer = client.get(self.running.guard.start_url.removeprefix(self.origin))
        assert answer.status_code == 303, answer.text
        return client

    def csrf(self, client: httpx.Client) -> str:
        found = CSRF.search(client.get("/").text)
        assert found, "no CSRF token on the page"
        return found.group(1)

    def unlock(self, client: httpx.Client, passphrase: str = PASSPHRASE) -> httpx.Response:
        """Unlock through the page; once unlocked, wait for the pull the desk starts by itself to end."""
        answer = client.post("/unlock", data={"csrf": self.csrf(client), "passphrase": passphrase})
        if answer.status_code == 303:
            status = lambda: self.running.front.status  # noqa: E731 - read afresh each time
            wait_until(lambda: status().at is not None and not status().running)
        return answer

    def pull(self) -> None:
        """One pull now, as the background thread does it (the thread waits an hour between its own)."""
        self.running.front.pull()


def wait_until(condition: Callable[[], bool], *, seconds: float = 30.0) -> None:
    """Poll for something the desk does in the background; a generous limit, not a measure of speed."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the desk did not get there in time")
        time.sleep(0.05)


@pytest.fixture
def desk(clinic: Clinic) -> Iterator[DeskUnderTest]:
    clinic.out.mkdir(mode=0o700, exist_ok=True)
    running = open_desk(clinic.dir, clinic.out, lang="nb", transport=clinic.broker.transport, interval=3600)
    running.serve_in_background()
    try:
        yield DeskUnderTest(running, clinic)
    finally:
        running.stop()
