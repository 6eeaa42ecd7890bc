"""CPU time taken on the whole machine while one step runs, by who took it, read from /proc (Linux).

The machine's cores are shared by everything the bench starts and by the kernel's own workers (writing
dirty pages back to the disk, among others): when a step is bound by the cores rather than by one
program, this shows where they went."""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

from bench.memory import tree

_TICK = os.sysconf("SC_CLK_TCK")


def _per_process() -> dict[int, tuple[str, float]]:
    """pid -> (command name, CPU seconds used so far, user + system, all its threads)."""
    found: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        found[int(entry.name)] = (name, (int(fields[11]) + int(fields[12])) / _TICK)
    return found


def _group(pid: int, name: str, named: dict[int, str]) -> str:
    if pid in named:
        return named[pid]
    if name.startswith("kworker"):
        return "kernel workers"
    if name in ("postgres", "redis-server"):
        return name
    return "other"


@dataclass
class Usage:
    """Seconds of CPU by group, and the wall-clock seconds they were taken in."""

    seconds: dict[str, float]
    wall: float

    def per(self, n: int) -> dict[str, float]:
        """Microseconds of CPU per item, by group."""
        return {group: used / n * 1e6 for group, used in self.seconds.items()}


class Meter:
    """CPU taken from `start` to `stop`: each named process with its children (`pids`), the children of
    this process that exit meanwhile (`children`, e.g. the clinic tool run with subprocess), the kernel's
    workers, PostgreSQL, Redis, and all else. Processes that start and end in between, other than our own
    children, are missed."""

    def __init__(self, pids: dict[str, int], children: str) -> None:
        self._pids = pids
        self._children = children

    def _snapshot(self) -> tuple[dict[int, tuple[str, float]], float]:
        reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
        return _per_process(), reaped.ru_utime + reaped.ru_stime

    def start(self) -> Meter:
        self._before, self._reaped = self._snapshot()
        self._t0 = os.times().elapsed
        return self

    def stop(self) -> Usage:
        """Each process's CPU since `start` (all of it for one started meanwhile), summed by group."""
        after, reaped = self._snapshot()
        wall = os.times().elapsed - self._t0
        named = {p: group for group, pid in self._pids.items() for p in tree(pid)}
        used: dict[str, float] = {self._children: reaped - self._reaped}
        for pid, (name, seconds) in after.items():
            if pid == os.getpid():
                continue
            # A kernel worker's name changes with the work it is doing: the pid alone says it is the same one.
            # Less CPU than before means the pid was taken by a new process meanwhile.
            earlier = self._before.get(pid)
            delta = seconds - earlier[1] if earlier is not None and seconds >= earlier[1] else seconds
            group = _group(pid, name, named)
            used[group] = used.get(group, 0.0) + delta
        return Usage(used, wall)
