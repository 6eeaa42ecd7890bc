"""Large pages are opened in a forked child while the tool files what is already open: same outcomes,
same order, refusals with their reasons, and the tool carries on by itself if the child dies."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from clinic_folder import Clinic
from referral_clinic import openers
from referral_clinic.inbox import Refused
from referral_clinic.openers import CHUNK, Openers
from referral_protocol.enrolment import InboxItem

PARENT = os.getpid()


def _items(n: int) -> list[InboxItem]:
    return [InboxItem(delivery_id=f"d{i}", envelope=b"x") for i in range(n)]


def _where_opened(item: InboxItem) -> tuple[str, int]:
    return item.delivery_id, os.getpid()


def test_a_large_page_is_opened_in_another_process_in_order() -> None:
    with Openers(_where_opened, child_from=10) as opening:
        page = opening.start(_items(3 * CHUNK + 1))
        got = [page.get(i) for i in range(3 * CHUNK + 1)]
        assert opening.opened_in_child == 3 * CHUNK + 1
    assert [d for d, _ in got] == [f"d{i}" for i in range(3 * CHUNK + 1)]
    assert {pid for _, pid in got} != {os.getpid()} and len({pid for _, pid in got}) == 1


def test_a_small_page_is_opened_here_and_only_as_far_as_it_is_read() -> None:
    asked: list[str] = []

    def here(item: InboxItem) -> str:
        asked.append(item.delivery_id)
        return item.delivery_id

    with Openers(here, child_from=10) as opening:
        page = opening.start(_items(9))
        assert asked == []  # nothing opened ahead
        assert [page.get(i) for i in range(3)] == ["d0", "d1", "d2"]
        assert asked == ["d0", "d1", "d2"] and opening.opened_in_child == 0


def test_a_refusal_keeps_its_reason_on_its_way_from_the_child() -> None:
    copy = pickle.loads(pickle.dumps(Refused("does not open", "does_not_open")))  # noqa: S301 - our own bytes
    assert isinstance(copy, Refused) and str(copy) == "does not open" and copy.report_as == "does_not_open"


def _dies_in_the_child_at_d30(item: InboxItem) -> tuple[str, int]:
    if item.delivery_id == "d30" and os.getpid() != PARENT:
        os._exit(3)  # as a kill would: no clean-up, no answer
    return item.delivery_id, os.getpid()


def test_when_the_child_dies_the_rest_is_opened_here_and_nothing_is_missing() -> None:
    with Openers(_dies_in_the_child_at_d30, child_from=10) as opening:
        page = opening.start(_items(4 * CHUNK))
        got = [page.get(i) for i in range(4 * CHUNK)]
        later = opening.start(_items(2 * CHUNK)).get(0)  # no new child after that: opened here
    assert [d for d, _ in got] == [f"d{i}" for i in range(4 * CHUNK)]
    assert got[0][1] != PARENT  # the first chunk came from the child
    assert all(pid == PARENT for _, pid in got[CHUNK:])  # from the chunk it died in on, here
    assert later == ("d0", PARENT)


TOOL = """
import os, sys, time
from referral_clinic.openers import Openers
from referral_protocol.enrolment import InboxItem

def where(item):
    return os.getpid()

opening = Openers(where, child_from=1).__enter__()
print(opening.start([InboxItem(delivery_id="d", envelope=b"")]).get(0), flush=True)
time.sleep(120)
"""


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")  # ended; whoever adopted it may not have reaped it yet


def test_a_tool_killed_outright_does_not_leave_its_child_holding_the_keys() -> None:
    tool = subprocess.Popen([sys.executable, "-c", TOOL], stdout=subprocess.PIPE, text=True)
    try:
        assert tool.stdout is not None
        child = int(tool.stdout.readline())
        assert child != tool.pid and not _gone(child)
        tool.kill()  # SIGKILL: nothing of the tool runs any more
        tool.wait()
        deadline = time.monotonic() + 10
        while not _gone(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(child)
    finally:
        tool.kill()


class CountingPool(ProcessPoolExecutor):
    submitted = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        CountingPool.submitted += len(args[0])
        return super().submit(fn, *args, **kwargs)


def test_a_pull_through_the_child_files_everything_and_reports_refusals_with_their_reasons(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openers, "CHILD_FROM", 2)
    monkeypatch.setattr(openers, "ProcessPoolExecutor", CountingPool)
    CountingPool.submitted = 0
    good = [clinic.serve() for _ in range(2 * CHUNK + 3)]
    elsewhere = clinic.serve(outer_clinic="another-clinic")  # addressed to another clinic: reported
    other_key = clinic.serve(recipient_keys=[os.urandom(32)])  # for another machine's key: left waiting
    assert clinic.pull("--limit", "500") == 1  # not complete: one is left waiting
    written = {p.name for p in clinic.out.glob("*.json")}
    assert written == {f"{p.reference}.json" for p in good}
    assert CountingPool.submitted == len(good) + 2  # every envelope was opened in the child
    assert clinic.broker.refused == {elsewhere.delivery_id: "wrong_addressee"}
    assert set(clinic.broker.acknowledged) == {p.delivery_id for p in good}
    assert set(clinic.broker.inbox) == {other_key.delivery_id}
