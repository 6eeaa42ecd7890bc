"""Opening a page's envelopes (verify, unseal, check) in order, here or in a second process.

Opening is most of a pull's work for the processor, and Python runs it on one core at a time: threads
made the pull slower (they take turns with the interpreter lock). For a large page, a child process
forked from the tool opens the envelopes while the tool itself files the ones already opened, so a
second core does the cryptography. The child only computes: it is given envelopes and gives back what
opening each gave (a checked payload, or the refusal), in order; every decision about the disk, the
ledger and the broker stays with the tool, so the order of a pull's steps, and what a crash at any
point leaves behind, do not change. The child holds the clinic's private keys as the tool does (it is
a fork of it: the keys are never sent anywhere), ignores Ctrl-C and SIGTERM (the tool decides when to
stop), and ends with the tool, even a killed one. Without fork (not Linux), for small pages, or once the child has died,
envelopes are opened in the tool itself, one at a time, as they always were.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Generic, TypeVar

from referral_protocol.enrolment import InboxItem

#: A page with at least this many envelopes to open is opened in the child; fewer are not worth a fork.
CHILD_FROM = 64
#: Envelopes a hand-over to the child: the tool starts filing once the first chunk is back.
CHUNK = 25
#: How often the child looks whether the tool is still there.
LOOK_FOR_TOOL_SECONDS = 0.2

T = TypeVar("T")

_open_one: Callable[[InboxItem], Any] | None = None  # the child's, inherited through the fork


def _start_child(open_one: Callable[[InboxItem], Any], tool: int) -> None:
    global _open_one  # one child, one pull: set once as the child starts
    _open_one = open_one
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_end_with, args=(tool,), name="referral-clinic-end-with-tool", daemon=True).start()


def _end_with(tool: int) -> None:
    """A killed tool (SIGKILL, a crash) cannot stop its child, which would wait for work for ever with the
    clinic's keys in its memory: the child sees it is no longer the tool's, and ends at once."""
    while os.getppid() == tool:
        time.sleep(LOOK_FOR_TOOL_SECONDS)
    os._exit(0)


def _open_chunk(items: list[InboxItem]) -> list[Any]:
    if _open_one is None:  # pragma: no cover - _start_child runs before any work reaches the child
        raise RuntimeError("the opening process was not started with a way to open envelopes")
    return [_open_one(item) for item in items]


class Opening(Generic[T]):
    """What opening each envelope of one page gives, by its position in the page; started ahead."""

    def __init__(self, openers: Openers[T], items: list[InboxItem], futures: list[Future[list[T]]]) -> None:
        self._openers = openers
        self._items = items
        self._futures = futures  # one a CHUNK of items; empty: each is opened here when asked for
        self._chunks: dict[int, list[T]] = {}

    def get(self, index: int) -> T:
        chunk, within = divmod(index, CHUNK)
        if chunk not in self._chunks and chunk < len(self._futures):
            try:
                self._chunks[chunk] = self._futures[chunk].result()
                self._openers.opened_in_child += len(self._chunks[chunk])
            except BrokenProcessPool:
                self._openers.lose_child()  # it was killed: open the rest here
                self._futures = []
        if chunk in self._chunks:
            return self._chunks[chunk][within]
        return self._openers.open_one(self._items[index])


class Openers(Generic[T]):
    """Opens envelopes for one pull with `open_one`, which must return (never raise) what each gives and
    whose results can be pickled. Use as a context manager; `start` may be called from another thread."""

    def __init__(self, open_one: Callable[[InboxItem], T], *, child_from: int | None = None) -> None:
        self.open_one = open_one
        self._child_from = CHILD_FROM if child_from is None else child_from
        self._lock = threading.Lock()
        self._child: ProcessPoolExecutor | None = None
        self._no_child = not (sys.platform == "linux" and "fork" in multiprocessing.get_all_start_methods())
        self.opened_in_child = 0  # envelopes the child opened (for the tests)

    def __enter__(self) -> Openers[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            child, self._child, self._no_child = self._child, None, True
        if child is not None:
            child.shutdown(wait=True, cancel_futures=True)

    def start(self, items: list[InboxItem]) -> Opening[T]:
        """Begin opening a page (in the child, when it is large enough), and return at once."""
        with self._lock:
            child = self._child_for(len(items))
            futures: list[Future[list[T]]] = []
            if child is not None:
                try:
                    futures = [child.submit(_open_chunk, items[i : i + CHUNK]) for i in range(0, len(items), CHUNK)]
                except (BrokenProcessPool, RuntimeError):
                    self._drop_child()
                    futures = []
        return Opening(self, items, futures)

    def _child_for(self, n: int) -> ProcessPoolExecutor | None:
        if self._no_child or n < self._child_from:
            return None
        if self._child is None:
            self._child = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("fork"),
                initializer=_start_child,
                initargs=(self.open_one, os.getpid()),  # a fork inherits them: nothing is pickled or sent
            )
        return self._child

    def lose_child(self) -> None:
        with self._lock:
            self._drop_child()

    def _drop_child(self) -> None:
        self._no_child = True
        if self._child is not None:
            self._child.shutdown(wait=False, cancel_futures=True)
            self._child = None
