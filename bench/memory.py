"""Resident memory of the product's processes, read from /proc (Linux)."""

from __future__ import annotations

import threading
from pathlib import Path


def _status(pid: int) -> dict[str, int]:
    found: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return found


def tree(pid: int) -> list[int]:
    """The process and its descendants (uvicorn --workers N runs each worker as a child)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            found.extend(tree(int(child)))
    return found


def rss(pid: int) -> int:
    """The largest resident set among the process and its children, in bytes (each process is one api)."""
    return max((_status(p).get("VmRSS", 0) for p in tree(pid)), default=0)


def peak(pid: int) -> int:
    """The largest peak resident set (VmHWM) among the process and its children, in bytes."""
    return max((_status(p).get("VmHWM", 0) for p in tree(pid)), default=0)


class Sampler:
    """Samples `rss` of named processes every `every` seconds in a thread, keeping every sample."""

    def __init__(self, pids: dict[str, int], every: float = 1.0) -> None:
        self.pids = pids
        self.every = every
        self.samples: dict[str, list[int]] = {name: [] for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.pids.items():
                self.samples[name].append(rss(pid))
            self._stop.wait(self.every)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, name: str) -> int:
        return max(self.samples[name], default=0)
