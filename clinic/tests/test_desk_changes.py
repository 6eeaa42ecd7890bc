"""The desk's pages wait on the desk for a change (GET /changes, decision 0137): a request is answered as soon
as the desk's own pull files something, or a mark or deletion is saved, and otherwise after the hold; only a
few wait at once (each holds a server thread); the guard's rules apply; stopping the desk answers them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import httpx
import pytest

from clinic_folder import Clinic
from desk_stand import DeskUnderTest, desk, wait_until
from referral_clinic.desk.app import REFRESH_SECONDS
from referral_clinic.desk.front import WAITING_MAX
from referral_clinic.desk.server import open_desk

__all__ = ["desk"]


class Waiting:
    """A GET /changes in a thread of its own, as the page's script sends it."""

    def __init__(self, client: httpx.Client, seen: int) -> None:
        self.answer: httpx.Response | None = None
        self._thread = threading.Thread(target=self._ask, args=(client, seen), daemon=True)
        self._thread.start()

    def _ask(self, client: httpx.Client, seen: int) -> None:
        self.answer = client.get("/changes", params={"seen": seen})

    def done(self) -> bool:
        return self.answer is not None

    def result(self) -> httpx.Response:
        self._thread.join(timeout=30)
        assert self.answer is not None, "the desk never answered"
        return self.answer


def _generation(client: httpx.Client) -> int:
    page = client.get("/")
    assert page.status_code == 200
    found = page.text.split('data-generation="', 1)[1].split('"', 1)[0]
    return int(found)


def _held(desk: DeskUnderTest, count: int) -> Callable[[], bool]:
    return lambda: desk.running.front._waiting == count


def test_a_waiting_page_is_answered_when_the_desks_pull_files_a_referral(desk: DeskUnderTest) -> None:
    client = desk.browser()
    desk.unlock(client)
    seen = _generation(client)
    waiting = Waiting(client, seen)
    wait_until(_held(desk, 1))
    assert not waiting.done()  # nothing changed: it is held
    referral = desk.clinic.serve()
    desk.pull()
    answer = waiting.result()
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["cache-control"] == "no-store"
    assert answer.json()["generation"] > seen
    assert answer.text.strip("{} \n").split(":")[0] == '"generation"'  # a number and nothing of a referral
    page = client.get("/").text
    assert referral.reference in page
    assert _generation(client) >= answer.json()["generation"]  # again once its PDF is written


def test_a_page_that_missed_a_change_is_answered_at_once_and_a_mark_is_a_change(desk: DeskUnderTest) -> None:
    client = desk.browser()
    desk.unlock(client)
    referral = desk.clinic.serve()
    desk.pull()
    stale = _generation(client) - 1
    assert client.get("/changes", params={"seen": stale}).json()["generation"] == stale + 1

    seen = _generation(client)
    waiting = Waiting(client, seen)
    wait_until(_held(desk, 1))
    csrf = desk.csrf(client)
    marked = client.post(f"/referral/{referral.reference}/mark", data={"csrf": csrf, "state": "read"})
    assert marked.status_code == 303
    assert waiting.result().json()["generation"] > seen


def test_nothing_changing_is_answered_after_the_hold_with_the_same_generation(clinic: Clinic) -> None:
    running = open_desk(clinic.dir, clinic.out, lang="nb", transport=clinic.broker.transport, hold_seconds=0.3)
    running.serve_in_background()
    try:
        stand = DeskUnderTest(running, clinic)
        client = stand.browser()
        stand.unlock(client)
        seen = _generation(client)
        answer = client.get("/changes", params={"seen": seen})
        assert answer.status_code == 200 and answer.json() == {"generation": seen}
    finally:
        running.stop()


def test_only_a_few_pages_wait_at_once_the_others_are_told_to_look_later(desk: DeskUnderTest) -> None:
    client = desk.browser()
    desk.unlock(client)
    seen = _generation(client)
    held = [Waiting(client, seen) for _ in range(WAITING_MAX)]
    wait_until(_held(desk, WAITING_MAX))
    busy = client.get("/changes", params={"seen": seen})
    assert busy.status_code == 503
    assert busy.headers["retry-after"] == str(REFRESH_SECONDS)
    assert client.get("/").status_code == 200  # the pages themselves are still served meanwhile
    desk.running.front.changed()
    assert all(w.result().status_code == 200 for w in held)
    wait_until(_held(desk, 0))
    assert client.get("/changes", params={"seen": seen}).status_code == 200  # room again


def test_stopping_the_desk_answers_the_waiting_pages(clinic: Clinic) -> None:
    running = open_desk(clinic.dir, clinic.out, lang="nb", transport=clinic.broker.transport, interval=3600)
    running.serve_in_background()
    stand = DeskUnderTest(running, clinic)
    client = stand.browser()
    stand.unlock(client)
    waiting = Waiting(client, _generation(client))
    wait_until(lambda: running.front._waiting == 1)
    stopped = threading.Thread(target=running.stop, daemon=True)
    stopped.start()
    stopped.join(timeout=20)
    assert not stopped.is_alive()
    assert waiting.result().status_code == 200


@pytest.fixture
def stranger(desk: DeskUnderTest) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=desk.origin, follow_redirects=False, timeout=30) as client:
        yield client


def test_changes_keeps_the_guards_rules(desk: DeskUnderTest, stranger: httpx.Client) -> None:
    assert stranger.get("/changes", params={"seen": 0}).status_code == 401  # no cookie
    client = desk.browser()
    assert client.get("/changes", params={"seen": 0}, headers={"Host": "localhost"}).status_code == 400
    assert client.get("/changes", params={"seen": 0}).status_code == 303  # locked: to the unlock page
    desk.unlock(client)
    assert client.get("/changes", params={"seen": "x"}).status_code == 400
    assert client.post("/changes", data={"seen": "0"}).status_code == 403  # no CSRF token
