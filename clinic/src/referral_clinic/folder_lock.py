"""One referral-clinic at a time in a clinic folder, on Windows, macOS and Linux alike.

Two locks, each on a file of its own beside the folder's data (never on the data itself, so the lock
is never what a backup copies or a crash leaves half-written):

- `DIR/.lock`, held for one step that writes the folder: a pull, `init`, a key change. Held briefly;
  a second pull meanwhile is told so and ends.
- `DIR/.watch.lock`, held for as long as `watch` (or the desk) keeps pulling. A second one on the same
  folder would only race the first for every page, so it is told so and ends; a single `pull`, a key
  change or `status` may still run between two of the watcher's pulls.

`filelock` takes an OS lock (LockFileEx on Windows, flock elsewhere) that the OS lets go of when the
process ends, however it ends: a killed pull never leaves the folder locked.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

LOCK_FILE = ".lock"
WATCH_LOCK_FILE = ".watch.lock"


class ClinicDirBusy(Exception):
    """Another `referral-clinic` process holds the folder's lock; the message says what to do."""


class ClinicDirUnusable(Exception):
    """The lock file cannot be made or opened (a read-only or missing folder)."""


@contextmanager
def hold(folder: Path) -> Iterator[None]:
    """Hold the folder for one step that writes it; ClinicDirBusy at once if another process has it."""
    with _held(
        folder / LOCK_FILE,
        f"another referral-clinic is using {folder} (a pull, a key change, or the desk's pull); "
        "try again when it has finished",
    ):
        yield


@contextmanager
def hold_for_watching(folder: Path) -> Iterator[None]:
    """Hold the folder for a process that keeps pulling (`watch`, the desk) for as long as it runs."""
    lock = take_for_watching(folder)
    try:
        yield
    finally:
        lock.release()


def take_for_watching(folder: Path) -> FileLock:
    """The watcher's lock, taken; the caller lets it go (the desk holds it across threads until it stops)."""
    return _take(
        folder / WATCH_LOCK_FILE,
        f"another referral-clinic is using {folder}: a `watch` or the desk already pulls for this folder; "
        "stop that one first, or leave the pulling to it",
    )


@contextmanager
def _held(path: Path, busy: str) -> Iterator[None]:
    lock = _take(path, busy)
    try:
        yield
    finally:
        lock.release()


def _take(path: Path, busy: str) -> FileLock:
    # thread_local=False: the lock is the process's, whichever thread (the desk's) takes or leaves it.
    # is_singleton=False: a second `hold` in this very process is refused too, as another process would be.
    lock = FileLock(path, timeout=0, mode=0o600, thread_local=False, is_singleton=False)
    try:
        lock.acquire()
    except Timeout:
        raise ClinicDirBusy(busy) from None
    except OSError as exc:
        raise ClinicDirUnusable(f"cannot use {path.parent}: {exc.strerror or exc}") from None
    return lock
