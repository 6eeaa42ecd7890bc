"""Writes that survive a crash or a power cut: data and directory entries are fsync'd before we go on."""

from __future__ import annotations

import ctypes
import functools
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

TEMP_PREFIX = ".incoming-"
TEMP_SUFFIX = ".tmp"
WRITER_BATCH = 16  # files handed to the writer thread at once


def write_new_file(path: Path, data: bytes) -> None:
    """Write `path` (mode 0600) all at once: temp file, fsync, rename, fsync the folder."""
    temp = _write_temp(path.parent, data, sync=True)
    try:
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)  # never leave a readable half of a referral behind
        raise
    fsync_dir(path.parent)


#: A file on its way: the descriptor of an unnamed file (O_TMPFILE), or the path of a named temp file.
Temp = int | Path
#: Files of one batch that may wait without a name at once, each holding a descriptor until it is named.
UNNAMED_AT_ONCE = 512


class NewFiles:
    """Files written into one folder as a batch and made durable together, before any takes its name.

    `add` hands a file's bytes to a writer thread, which writes them (mode 0600) while the caller goes
    on (opening the next envelope, say: making a file is the kernel's work, and both run at once).
    `sync` waits for every write and makes them all durable; it raises the first write's error, if any.
    `publish` then gives each its name. Leaving the block waits for the writer and lets go of every file
    not published. The caller fsyncs the folder before it relies on the new names.

    Where the file system can (Linux: O_TMPFILE, ext4, XFS, btrfs, tmpfs), a file is written without any
    name, and `publish` links it into the folder under its own: one change to the folder a file instead
    of three (a temp name made, the file's name made, the temp name removed), which made the clinic pull
    10–38 % faster on ext4 (docs/performance.md). The link also refuses to replace a file that took the
    name meanwhile, and a crash leaves nothing behind to clean up (an unnamed file lasts as long as a
    descriptor of it: the tool's, or a copy in the opening child forked meanwhile, which ends with the
    pull). Elsewhere, and past UNNAMED_AT_ONCE files (or a quarter of the process's descriptors) in one
    batch, a file is written under a temporary name and renamed into place.

    On Linux from 5.8 one syncfs(2) of the folder's file system makes the whole batch durable, and
    reports any write-back error on that file system since the batch began (the folder is opened
    first, and syncfs checks the errors seen since that descriptor was opened). Elsewhere, or when
    syncfs is not there, each file is fsync'd: the same promise, one wait for the disk a file.
    """

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._fd = os.open(folder, os.O_RDONLY)
        self._unnamed_room = _unnamed_room(folder)  # how many more files may be unnamed
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="referral-clinic-writer")
        self._writes: list[Future[list[Temp]]] = []  # a batch of files each, in the order added
        self._pending: list[bytes] = []
        self._published: set[Temp] = set()

    def __enter__(self) -> NewFiles:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self._writer.shutdown(wait=True)
        os.close(self._fd)
        for write in self._writes:
            # A failed batch let go of what it had written; the others' files are let go of here, and the
            # named ones not published removed: never leave a readable half of a referral behind.
            for temp in write.result() if write.exception() is None else []:
                _let_go(temp, published=temp in self._published)

    def add(self, data: bytes) -> None:
        """Queue a file; the writer takes them WRITER_BATCH at a time (one hand-over between threads a
        batch, not one a file)."""
        self._pending.append(data)
        if len(self._pending) >= WRITER_BATCH:
            self._hand_over()

    def _hand_over(self) -> None:
        if self._pending:
            unnamed = min(len(self._pending), self._unnamed_room)
            self._unnamed_room -= unnamed
            self._writes.append(self._writer.submit(_write_temps, self._folder, self._pending, unnamed))
            self._pending = []

    def sync(self) -> list[Temp]:
        """Wait for every file added, make them durable, and return them in the order added."""
        self._hand_over()
        temps = [temp for write in self._writes for temp in write.result()]
        whole_file_system = _syncfs()
        if whole_file_system is not None:
            if whole_file_system(self._fd) != 0:
                number = ctypes.get_errno()
                raise OSError(number, os.strerror(number), str(self._folder))
            return temps
        for temp in temps:
            if isinstance(temp, int):
                os.fsync(temp)
            else:
                _fsync_path(temp)
        return temps

    def publish(self, temp: Temp, path: Path) -> None:
        """Give a durable file its name (`give_name`)."""
        give_name(temp, path, self._fd)
        self._published.add(temp)


def give_name(temp: Temp, path: Path, folder_fd: int) -> None:
    """Name a file written by `_make_temp` in the folder open as `folder_fd`: an unnamed one is linked
    (never over a file that has the name), a named temp file renamed."""
    if isinstance(temp, int):
        # linkat(2) with AT_SYMLINK_FOLLOW: the dst_dir_fd makes Python call linkat rather than link.
        os.link(f"/proc/self/fd/{temp}", path, dst_dir_fd=folder_fd, follow_symlinks=True)
    else:
        os.replace(temp, path)


def _unnamed_room(folder: Path) -> int:
    """How many files of a batch may be written without a name in `folder`: none where the system or its
    file system cannot make unnamed files, or link them by their descriptor."""
    tmpfile = getattr(os, "O_TMPFILE", None)
    if tmpfile is None or not os.path.isdir("/proc/self/fd"):
        return 0
    try:
        fd = os.open(folder, tmpfile | os.O_WRONLY, 0o600)
    except OSError:  # EOPNOTSUPP: this file system has none; EISDIR: a kernel older than 3.11
        return 0
    os.close(fd)
    import resource  # Unix only, and only needed where there are unnamed files

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(0, min(UNNAMED_AT_ONCE, soft // 4))


def _write_temps(folder: Path, batch: list[bytes], unnamed: int) -> list[Temp]:
    """Write each, the first `unnamed` without a name; on an error, let go of what this batch wrote and
    raise it."""
    done: list[Temp] = []
    try:
        for index, data in enumerate(batch):
            done.append(_make_temp(folder, data, unnamed=index < unnamed))
    except BaseException:
        for temp in done:
            _let_go(temp, published=False)
        raise
    return done


def _make_temp(folder: Path, data: bytes, *, unnamed: bool) -> Temp:
    if not unnamed:
        return _write_temp(folder, data, sync=False)
    fd = os.open(folder, os.O_TMPFILE | os.O_WRONLY, 0o600)
    try:
        _write_all(fd, data)
    except BaseException:
        os.close(fd)  # it has no name: closing it is all it takes to be gone
        raise
    return fd


def _let_go(temp: Temp, *, published: bool) -> None:
    if isinstance(temp, int):
        os.close(temp)  # an unnamed file not published is gone with its last descriptor
    elif not published:
        temp.unlink(missing_ok=True)


def _write_temp(folder: Path, data: bytes, *, sync: bool) -> Path:
    fd, temp_name = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)  # 0600
    temp = Path(temp_name)
    try:
        try:
            _write_all(fd, data)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


@functools.cache
def _syncfs() -> Callable[[int], int] | None:
    """libc's syncfs where it reports write-back errors (Linux 5.8 and later), else None."""
    uname = os.uname()
    if uname.sysname != "Linux":
        return None
    try:
        major, minor = (int(part) for part in uname.release.split(".")[:2])
    except ValueError:
        return None
    if (major, minor) < (5, 8):  # before 5.8 syncfs returned 0 even when writing back failed
        return None
    try:
        function: Callable[[int], int] = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    return function


def append(path: Path, data: bytes) -> None:
    """Append `data` to `path` (created 0600) and fsync it, and the folder when the file is new."""
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        _write_all(fd, data)
        os.fsync(fd)
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
    """fsync a folder (its entries)."""
    _fsync_path(folder)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
