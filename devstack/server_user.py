"""Running PostgreSQL as root: the unprivileged user it runs as, and how programs are run as that user.

PostgreSQL refuses to run as root.  When we are root (CI), ``initdb`` and
``pg_ctl`` run as an unprivileged user: ``postgres`` if the system has it,
otherwise a system user ``referral-broker`` that we create.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from devstack.ports import ServerUnavailable

_FALLBACK_USER = "referral-broker"


@dataclass(frozen=True)
class ServerUser:
    name: str
    uid: int
    gid: int
    home: str


def server_user() -> ServerUser | None:
    """The unprivileged user PostgreSQL runs as, or None to run as ourselves.

    Only when we are root: ``postgres`` if it exists (Debian's package creates
    it), else ``referral-broker``, created on first use as a system user
    without a home directory.
    """
    if os.geteuid() != 0:
        return None
    for name in ("postgres", _FALLBACK_USER):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return ServerUser(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)
    useradd = shutil.which("useradd")
    if useradd is None:
        raise ServerUnavailable(
            "running as root, PostgreSQL needs an unprivileged user, but neither `postgres` nor "
            f"`{_FALLBACK_USER}` exists and `useradd` is not available to create one"
        )
    args = [useradd, "--system", "--no-create-home"]
    if Path("/usr/sbin/nologin").exists():
        args += ["--shell", "/usr/sbin/nologin"]
    result = subprocess.run(  # noqa: S603 - fixed argv, absolute useradd path, no shell
        [*args, _FALLBACK_USER], capture_output=True, text=True, check=False, timeout=60
    )
    try:  # a concurrent caller may have created it first; that's fine too
        entry = pwd.getpwnam(_FALLBACK_USER)
    except KeyError:
        raise ServerUnavailable(
            f"could not create system user {_FALLBACK_USER!r} for PostgreSQL: {(result.stdout + result.stderr).strip()}"
        ) from None
    return ServerUser(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def traversable(directory: Path, user: ServerUser) -> bool:
    """Can *user* search *directory* and every directory above it?

    Unix checks exactly one permission class (owner, group or other), so we do
    the same.  ACLs are not considered; a directory that does not exist yet
    counts as not traversable.
    """
    groups = set(os.getgrouplist(user.name, user.gid))
    for component in (directory, *directory.parents):
        try:
            st = component.stat()
        except OSError:
            return False
        if st.st_uid == user.uid:
            needed = stat.S_IXUSR
        elif st.st_gid in groups:
            needed = stat.S_IXGRP
        else:
            needed = stat.S_IXOTH
        if not st.st_mode & needed:
            return False
    return True


def chown_tree(root: Path, user: ServerUser) -> None:
    """chown -R, touching only entries not yet owned by *user* (cheap on re-use)."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (dirpath, *(os.path.join(dirpath, n) for n in (*dirnames, *filenames))):
            try:
                st = os.lstat(name)
                if st.st_uid != user.uid or st.st_gid != user.gid:
                    os.lchown(name, user.uid, user.gid)
            except FileNotFoundError:
                continue


def _server_env(user: ServerUser | None) -> dict[str, str]:
    # PG* variables of the caller (PGDATA, PGPORT, PGHOST, ...) must not steer
    # our private server or point our tools at the shared one.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"  # stable, parseable messages
    if user is not None:
        env.update(HOME=user.home, USER=user.name, LOGNAME=user.name)
    return env


def run_as(args: list[str], user: ServerUser | None, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a program, as *user* when given.

    Dropping privileges uses subprocess's own ``user=``/``group=``/
    ``extra_groups=`` (setgroups, setregid, setreuid done in C between fork
    and exec): no ``preexec_fn`` (unsafe with threads), and unlike ``runuser``
    no PAM session that a minimal container may not be configured for.
    """
    return subprocess.run(  # noqa: S603 - argv of absolute paths found by find_*_bin, no shell
        args,
        cwd=cwd,
        env=_server_env(user),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        user=None if user is None else user.uid,
        group=None if user is None else user.gid,
        extra_groups=None if user is None else [],
    )


def process_is(pid: int, comm: str, cwd: Path) -> bool:
    """Is *pid* a live process of program *comm* whose working dir is *cwd*?

    PostgreSQL's postmaster and redis-server both chdir into their data dir,
    so this tells our own leftover server from an unrelated process that
    happens to have the recycled pid of a pid file (for instance the shared
    cluster's postmaster, which runs as the same ``postgres`` user: a blind
    ``pg_ctl stop`` on a stale pid file could signal it).
    """
    if pid <= 0:
        return False
    proc = Path("/proc") / str(pid)
    if not Path("/proc/self").exists():  # no procfs: all we can ask is "alive?"
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        name = (proc / "comm").read_text().strip()
        return name == comm and os.path.samefile(proc / "cwd", cwd)
    except OSError:  # gone, a zombie, or not ours to inspect
        return False


def read_pid(pidfile: Path) -> int | None:
    try:
        first = pidfile.read_text().split("\n", 1)[0].strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return int(first) if first.isdigit() else None
