"""Writes that survive a crash or a power cut, the same way on Windows, macOS and Linux.

A file is written under a temporary name in its own folder (so the rename never crosses file
systems), and fsync'd; only then does it take its name, and the folder is fsync'd (where the OS lets
a folder be opened: not on Windows, whose NTFS journals the names itself). The caller acknowledges
nothing before that. Taking the name either replaces what has it (`replace=True`: our own config, the
key file being re-locked) or never does (a referral, a new key): a hard link, which fails when the
name is taken; where the file system has no hard links (FAT, exFAT, some network shares), the name is
first claimed by creating it exclusively, and our file renamed over our own claim. A crash between
the two leaves an empty file under the name, which the ledger's "writing" line marks as ours to
write again (`inbox_filing`).

On macOS, fsync(2) hands the data to the drive but not through its cache: F_FULLFSYNC does.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

TEMP_PREFIX = ".incoming-"
TEMP_SUFFIX = ".tmp"
_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation by os.write


def write_file(path: Path, data: bytes, *, replace: bool) -> None:
    """Write `path` (mode 0600) all at once: temp file, fsync, name, fsync the folder."""
    temp = write_temp(path.parent, data)
    try:
        give_name(temp, path, replace=replace)
    finally:
        temp.unlink(missing_ok=True)  # a link leaves the temp name; a failure, a readable half
    fsync_dir(path.parent)


def write_temp(folder: Path, data: bytes) -> Path:
    """A new file in `folder` under a unique temporary name (mkstemp: exclusive, 0600), durable."""
    fd, temp_name = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
    temp = Path(temp_name)
    try:
        try:
            _write_all(fd, data)
            fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def give_name(temp: Path, path: Path, *, replace: bool) -> None:
    """Give a durable temp file its name; without `replace`, FileExistsError if the name is taken.
    The caller removes `temp` afterwards (a link leaves it) and fsyncs the folder."""
    if replace:
        os.replace(temp, path)
        return
    try:
        os.link(temp, path)
        return
    except FileExistsError:
        raise
    except (OSError, NotImplementedError):
        pass  # no hard links on this file system: claim the name instead
    claim = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _BINARY, 0o600)  # FileExistsError if taken
    os.close(claim)
    os.replace(temp, path)  # over our own, empty claim


class NewFiles:
    """A page's files, written and fsync'd by a writer thread while the caller opens the next envelope
    (the cryptography and the disk work at once), all made durable before any takes its name.

    `add` queues a file; `sync` waits for every one and returns their temp paths in the order added
    (raising the first write's error); `publish` names one. Leaving the block removes every temp file
    not published: never leave a readable half of a referral behind. The caller fsyncs the folder."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="referral-clinic-writer")
        self._writes: list[Future[Path]] = []

    def __enter__(self) -> NewFiles:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self._writer.shutdown(wait=True)
        for write in self._writes:
            if write.exception() is None:
                write.result().unlink(missing_ok=True)  # published: renamed away, or linked and left

    def add(self, data: bytes) -> None:
        self._writes.append(self._writer.submit(write_temp, self._folder, data))

    def sync(self) -> list[Path]:
        return [write.result() for write in self._writes]

    def publish(self, temp: Path, path: Path, *, replace: bool = False) -> None:
        give_name(temp, path, replace=replace)


def append(path: Path, data: bytes) -> None:
    """Append `data` to `path` (created 0600) and fsync it, and the folder when the file is new."""
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _BINARY, 0o600)
    try:
        _write_all(fd, data)
        fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)


def remove_stale_temp_files(folder: Path, *, older_than_seconds: float = 3600.0) -> int:
    """Delete temp files a killed writer left; only old ones, in case another writer shares the folder."""
    cutoff = time.time() - older_than_seconds
    removed = 0
    for temp in folder.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"):
        try:
            if temp.stat().st_mtime < cutoff:
                temp.unlink()
                removed += 1
        except OSError:
            continue  # gone already, or not ours to remove: the pull itself does not depend on it
    return removed


def fsync_dir(folder: Path) -> None:
    """fsync a folder's entries where the OS can (Windows opens no folder as a file, and needs none)."""
    if sys.platform == "win32":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fsync(fd)
    finally:
        os.close(fd)


def fsync(fd: int) -> None:
    if sys.platform == "darwin":
        import fcntl  # macOS only: through the drive's cache too

        try:
            fcntl.fcntl(fd, fcntl.F_FULLFSYNC)
            return
        except OSError:
            pass  # a file system without it (some network shares): fsync is what there is
    os.fsync(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_new_file(path: Path, data: bytes) -> None:
    """`write_file` replacing what has the name: a record of the tool's own (the last pull, a PDF)."""
    write_file(path, data, replace=True)
