"""Writes that survive a crash or a power cut: data and directory entries are fsync'd before we go on."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

TEMP_PREFIX = ".incoming-"
TEMP_SUFFIX = ".tmp"


def write_new_file(path: Path, data: bytes, *, sync_folder: bool = True) -> None:
    """Write `path` (mode 0600) all at once: temp file, fsync, rename, fsync the folder.

    With `sync_folder=False` the caller fsyncs the folder itself (once for many files) before it relies
    on the new names surviving a crash."""
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)  # 0600
    temp = Path(temp_name)
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)  # never leave a readable half of a referral behind
        raise
    if sync_folder:
        fsync_dir(path.parent)


def append(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Append `data` to `path` (created 0600) and fsync it, and the folder when the file is new.

    With `sync=False` the data is only written; `sync_file` makes it durable later."""
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        _write_all(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)


def sync_file(path: Path) -> None:
    fsync_dir(path)  # the same call: fsync whatever the path names


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
    """fsync a folder (its entries), or a file by its path."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
