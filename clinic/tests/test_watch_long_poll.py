"""`watch` waits on the broker (a long-polling inbox request) by default: it pulls when the broker says
something arrived, asks again at once after an empty wait, asks an idle broker at most 3 times a minute, and
falls back to its interval, without spinning, against a broker (or a proxy) that answers at once."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

from broker_stand_in import referral_payload
from clinic_folder import SLUG, Clinic
from referral_clinic import watch
from referral_clinic.cli import main
from referral_clinic.pull_report import PullReport


class RecordedPauses(threading.Event):
    """The stopper's event, recording each pause asked of it instead of sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.pauses: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.pauses.append(timeout or 0.0)
        return self.is_set()


def _stopper() -> tuple[watch.Stopper, RecordedPauses]:
    stopper = watch.Stopper()
    stopper.event = RecordedPauses()
    return stopper, stopper.event


def test_watch_pulls_when_the_broker_announces_something_and_otherwise_asks_again_at_once() -> None:
    stopper, event = _stopper()
    answers = [watch.Waited.NOTHING, watch.Waited.NOTHING, watch.Waited.NEWS, watch.Waited.NOTHING]
    pulls: list[int] = []

    def cycle(s: watch.Stopper) -> PullReport:
        pulls.append(len(answers))
        return PullReport()

    def long_poll(s: watch.Stopper) -> watch.Waited:
        if not answers:
            s.event.set()
            return watch.Waited.NOTHING
        return answers.pop(0)

    assert watch.loop(cycle, interval=60, max_backoff=900, stopper=stopper, long_poll=long_poll) == 0
    assert pulls == [4, 1]  # at the start, and right after the broker said something waits
    assert event.pauses == []  # no sleeping between long polls


def test_a_broker_that_answers_at_once_makes_watch_fall_back_to_its_interval() -> None:
    stopper, event = _stopper()
    asked: list[int] = []

    def long_poll(s: watch.Stopper) -> watch.Waited:
        asked.append(1)
        if len(asked) == 3:
            s.event.set()
        return watch.wait_for_news(lambda: False, wait=25, interrupted=s)

    watch.loop(lambda s: PullReport(), interval=60, max_backoff=900, stopper=stopper, long_poll=long_poll)
    assert len(asked) == 3
    assert len(event.pauses) == 3 and all(54 <= p <= 66 for p in event.pauses)  # the interval, ±10 %


def test_an_idle_clinic_asks_at_most_three_times_a_minute_however_briefly_the_broker_holds() -> None:
    now = [0.0]

    def held_for(seconds: float) -> Any:
        def ask() -> bool:
            now[0] += seconds
            return False

        return ask

    def sleep(seconds: float) -> None:
        now[0] += seconds

    for held in (12.5, 15.0, 19.9, 25.0, 26.0):
        now[0] = 0.0
        outcome = watch.wait_for_news(
            held_for(held), wait=25, interrupted=lambda: False, clock=lambda: now[0], sleep=sleep
        )
        assert outcome is watch.Waited.NOTHING
        assert now[0] >= 20.0  # each empty ask takes at least 20 s: at most 3 a minute
    now[0] = 0.0
    too_soon = watch.wait_for_news(held_for(1.0), wait=25, interrupted=lambda: False, clock=lambda: now[0], sleep=sleep)
    assert too_soon is watch.Waited.TOO_SOON


def test_watch_against_a_broker_that_ignores_wait_does_not_spin(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole command against the broker stand-in, which answers every inbox request at once."""
    made: list[watch.Stopper] = []
    real_stopper = watch.Stopper

    class Recorded(real_stopper):  # type: ignore[misc,valid-type]
        def __init__(self) -> None:
            super().__init__()
            made.append(self)

    monkeypatch.setattr(watch, "Stopper", Recorded)
    stop = threading.Timer(2.0, lambda: made[0].event.set())
    stop.start()
    try:
        assert (
            main(["watch", "--dir", str(clinic.dir), "--out", str(clinic.out)], transport=clinic.broker.transport) == 0
        )
    finally:
        stop.cancel()
    queries = [r.url.query.decode() for r in clinic.broker.requests]
    assert len(queries) == 2, queries  # the first pull's page, one long poll; then the interval's pause
    assert "wait=25" in queries[1] and "wait" not in queries[0]


def test_watch_with_an_interval_never_asks_the_broker_to_wait(clinic: Clinic, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[watch.Stopper] = []
    real_stopper = watch.Stopper

    class Recorded(real_stopper):  # type: ignore[misc,valid-type]
        def __init__(self) -> None:
            super().__init__()
            made.append(self)

    monkeypatch.setattr(watch, "Stopper", Recorded)
    stop = threading.Timer(1.5, lambda: made[0].event.set())
    stop.start()
    try:
        argv = ["watch", "--dir", str(clinic.dir), "--out", str(clinic.out), "--interval", "0.2"]
        assert main(argv, transport=clinic.broker.transport) == 0
    finally:
        stop.cancel()
    queries = [r.url.query.decode() for r in clinic.broker.requests]
    assert len(queries) >= 3 and not any("wait" in q for q in queries)


def test_the_desk_waits_on_the_broker_by_default_and_does_not_spin_when_it_answers_at_once(clinic: Clinic) -> None:
    from clinic_folder import PASSPHRASE
    from referral_clinic.desk.front import FrontDesk
    from referral_clinic.desk.texts import Texts

    clinic.out.mkdir(mode=0o700, exist_ok=True)
    front = FrontDesk(clinic.dir, clinic.out, Texts("nb"), transport=clinic.broker.transport)
    front.start()
    try:
        front.unlock(PASSPHRASE)
        deadline = time.monotonic() + 10
        while len(clinic.broker.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)  # a desk that spun would ask hundreds of times meanwhile
    finally:
        front.stop()
    queries = [r.url.query.decode() for r in clinic.broker.requests]
    assert len(queries) == 2, queries  # its first pull, one long poll; then its interval's pause
    assert "wait" not in queries[0] and "wait=25" in queries[1]


def _session(clinic: Clinic) -> Any:
    from clinic_folder import PASSPHRASE
    from referral_clinic.session import unlock

    return unlock(clinic.dir, PASSPHRASE)


def test_the_long_polls_page_is_filed_by_the_pull_without_listing_it_again(clinic: Clinic) -> None:
    from referral_clinic.cli import LongPoll, pull_once

    session = _session(clinic)
    clinic.out.mkdir(mode=0o700, exist_ok=True)
    served = [clinic.serve(), clinic.serve(referral_payload(SLUG))]
    poll = LongPoll(lambda: session, clinic.broker.transport, limit=100)
    assert poll() is True
    page = poll.take()
    assert page is not None and len(page.items) == 2
    assert poll.take() is None  # handed over once
    report = pull_once(
        session, clinic.out, limit=100, fhir_export=False, transport=clinic.broker.transport, first_page=page
    )
    assert report.written == 2 and report.acknowledged == 2 and report.complete
    assert all((clinic.out / f"{p.reference}.json").exists() for p in served)
    assert clinic.broker.acknowledged == [p.delivery_id for p in served]
    asked = [(r.method, r.url.path, r.url.query.decode()) for r in clinic.broker.requests]
    assert [a for a in asked if a[0] == "GET"] == [("GET", "/api/v1/clinic/inbox", "limit=100&after=start&wait=25")]


def test_a_page_another_pull_filed_meanwhile_is_neither_written_twice_nor_lost(clinic: Clinic) -> None:
    from referral_clinic.cli import LongPoll, pull_once

    session = _session(clinic)
    clinic.out.mkdir(mode=0o700, exist_ok=True)
    referral = clinic.serve()
    poll = LongPoll(lambda: session, clinic.broker.transport, limit=100)
    assert poll() is True
    stale = poll.take()
    first = pull_once(session, clinic.out, limit=100, fhir_export=False, transport=clinic.broker.transport)
    assert first.written == 1
    again = pull_once(
        session, clinic.out, limit=100, fhir_export=False, transport=clinic.broker.transport, first_page=stale
    )
    assert again.written == 0 and again.already_had == 1 and not again.local_failures and not again.refused
    assert [p.name for p in clinic.out.iterdir() if p.name.startswith(referral.reference)] == [
        f"{referral.reference}.json"
    ]
    assert clinic.broker.acknowledged == [referral.delivery_id]


def test_an_empty_or_failed_long_poll_hands_nothing_to_the_pull(clinic: Clinic) -> None:
    from referral_clinic.cli import LongPoll

    session = _session(clinic)
    poll = LongPoll(lambda: session, clinic.broker.transport, limit=100)
    assert poll() is False and poll.take() is None

    def away(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("the broker is away", request=request)

    clinic.serve()
    down = LongPoll(lambda: session, httpx.MockTransport(away), limit=100)
    assert down() is None and down.take() is None
