"""A PostgreSQL cluster's directory: where it lives (relocated when root cannot hand it over in place),
who runs in it, and its first initialisation."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

from devstack.binaries import find_postgres_bin
from devstack.ports import ServerUnavailable
from devstack.server_logs import tail
from devstack.server_user import ServerUser, chown_tree, process_is, read_pid, run_as, server_user, traversable

# sun_path is 108 bytes on Linux, one of which is the terminating NUL.
_SOCKET_PATH_MAX = 107

# Where clusters go when the caller's path is out of the server user's reach.
#
# The problem: as root, PostgreSQL runs as `postgres`, which must be able to
# reach its data dir by path (pg_ctl, initdb and the postmaster all chdir to
# it).  pytest's tmp_path lives under /tmp/pytest-of-root, which pytest keeps
# at mode 0700, as it does each tmp dir below it.
#
# Two ways out were considered.  (1) chmod o+x the blocking directories: this
# was tried first and fails in practice, because every new pytest session
# (other engineers run theirs concurrently) resets /tmp/pytest-of-root to
# 0700, which cuts off initdb or pg_ctl mid-run with "Permission denied"; it
# also widens directories we do not own, such as /root.  (2) Relocate: what
# we do.  When the requested path is not traversable by the server user, the
# cluster lives in RELOCATION_BASE/pg-<hash of the requested path>/pgdata and
# the requested path becomes a symlink to it, so it is found again on the next
# start (re-use) and the logs are where the caller looks.  RELOCATION_BASE is
# root-owned and 0711 (searchable, not listable); each cluster is 0700 and
# owned by the server user.  Nothing outside it changes mode.  When the
# symlink disappears (pytest deletes old tmp dirs), the cluster is garbage and
# the next relocating start removes it, unless a postmaster still runs there.
# A path the user can already reach (e.g. the project's .dev/) is used in
# place, and so is any path when we are not root.
RELOCATION_BASE = Path("/tmp/referral-broker-pgdata")  # noqa: S108 - fixed name, ownership and mode verified


def _relocation_base() -> Path:
    base = RELOCATION_BASE
    with contextlib.suppress(FileExistsError):
        base.mkdir(mode=0o711)
    st = os.lstat(base)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise ServerUnavailable(
            f"{base} must be a directory owned by uid {os.geteuid()} and writable by it alone; "
            "it is not (someone else created it?). Remove it and try again."
        )
    if stat.S_IMODE(st.st_mode) != 0o711:
        os.chmod(base, 0o711)  # noqa: S103 - search-only for others: the PostgreSQL user must pass
    return base


def _relocate(link: Path) -> Path:
    """Point *link* (the caller's path) at a relocated cluster dir and return that dir."""
    base = _relocation_base()
    entry = base / f"pg-{hashlib.sha256(os.fsencode(link)).hexdigest()[:16]}"
    cluster = entry / "pgdata"
    # The link first, the entry second: the garbage collector of a concurrent
    # start keeps every entry whose origin still links to it, and skips
    # entries whose origin file is not written yet.
    if link.is_symlink():
        if os.readlink(link) != str(cluster):
            raise ServerUnavailable(
                f"{link} is a symlink to {os.readlink(link)}, which the PostgreSQL user cannot reach; "
                "pass a directory it can traverse"
            )
    else:
        if link.is_dir():
            if any(link.iterdir()):
                raise ServerUnavailable(
                    f"{link} is neither empty nor a PostgreSQL data directory (no PG_VERSION); "
                    "refusing to initialise a cluster there"
                )
            link.rmdir()
        link.symlink_to(cluster, target_is_directory=True)
    entry.mkdir(mode=0o711, exist_ok=True)
    os.chmod(entry, 0o711)  # noqa: S103 - search-only for others: the PostgreSQL user must pass
    (entry / "origin").write_text(str(link))
    cluster.mkdir(exist_ok=True)
    _collect_garbage(base, keep=entry)
    return cluster


def _collect_garbage(base: Path, keep: Path) -> None:
    """Remove relocated clusters nothing links to any more and nothing runs in."""
    for entry in base.iterdir():
        if entry == keep or not entry.name.startswith("pg-"):
            continue
        cluster = entry / "pgdata"
        try:
            origin = Path((entry / "origin").read_text())
            if origin.is_symlink() and os.readlink(origin) == str(cluster):
                continue
        except (OSError, UnicodeDecodeError):
            continue  # being created right now, or not ours
        if postmaster_pid(cluster) is None:
            shutil.rmtree(entry, ignore_errors=True)


def cluster_dir(requested: Path, user: ServerUser | None) -> Path:
    """Where the cluster for *requested* lives: normally *requested* itself."""
    requested = Path(os.path.abspath(requested))
    if user is None:
        return requested.resolve()
    requested.parent.mkdir(parents=True, exist_ok=True)
    real = requested.resolve()
    if traversable(real.parent, user):
        return real
    return _relocate(requested.parent.resolve() / requested.name)


def postmaster_pid(data_dir: Path) -> int | None:
    """PID of the postmaster running on *data_dir*, or None (no/stale pid file)."""
    pid = read_pid(data_dir / "postmaster.pid")
    if pid is not None and process_is(pid, "postgres", data_dir):
        return pid
    return None


def postmaster_port(data_dir: Path) -> int | None:
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None


def socket_dir_for(data_dir: Path, user: ServerUser | None) -> tuple[Path, bool]:
    """Where the Unix socket goes: the data dir, or a private short dir in /tmp.

    Returns (directory, is_temporary).  The socket path is
    DIR/.s.PGSQL.PORT and must fit in sun_path (107 bytes).
    """
    if len(os.fsencode(data_dir / ".s.PGSQL.65535")) <= _SOCKET_PATH_MAX:
        return data_dir, False
    # mkdtemp makes a fresh 0700 dir (no symlink or pre-creation games in the
    # shared /tmp); /tmp rather than $TMPDIR because the point is a short path.
    short = Path(tempfile.mkdtemp(prefix="rb-pg-", dir="/tmp"))
    if user is not None:
        os.chown(short, user.uid, user.gid)
    return short, True


def prepare_data_dir(data_dir: Path) -> ServerUser | None:
    """Create *data_dir*, and when root hand it to the unprivileged user."""
    user = server_user()
    if user is not None and not traversable(data_dir.parent, user):
        raise ServerUnavailable(
            f"the PostgreSQL user {user.name!r} cannot reach {data_dir}: a directory above it "
            "lacks search permission for that user (did something chmod it?)"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    if user is not None:
        chown_tree(data_dir, user)
    return user


def initdb(data_dir: Path, user: ServerUser | None) -> None:
    if (data_dir / "PG_VERSION").exists():
        return  # an initialised cluster: re-use it
    if any(data_dir.iterdir()):
        raise ServerUnavailable(
            f"{data_dir} is neither empty nor a PostgreSQL data directory (no PG_VERSION); "
            "refusing to initialise a cluster there"
        )
    program = find_postgres_bin("initdb")
    result = run_as(
        [
            str(program), "-D", str(data_dir), "-A", "trust", "-U", "postgres",
            "--no-sync", "-E", "UTF8", "--locale=C",
        ],
        user,
        cwd=data_dir,
        timeout=300,
    )  # fmt: skip
    if result.returncode != 0:
        raise ServerUnavailable(
            f"initdb failed for {data_dir} (exit status {result.returncode}):\n" + tail(result.stdout + result.stderr)
        )
