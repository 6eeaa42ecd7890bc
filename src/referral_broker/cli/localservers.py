"""Private PostgreSQL and Redis servers, started from the system's binaries.

PostgreSQL and Redis are always real in this project, but neither ``make dev``
nor the test suite may lean on the machine's shared servers (127.0.0.1:5432
and 127.0.0.1:6379).  This module starts servers of our own, in a data folder
the caller chooses, on free loopback ports:

    pg = start_postgres(Path(".dev/postgres"))
    rd = start_redis(Path(".dev/redis"))
    ...
    rd.stop()
    pg.stop()

Registering the clean-up (``atexit``, a fixture finaliser, a signal handler) is
the caller's job; every ``stop()`` is safe to call twice and copes with a
server that already died.

PostgreSQL refuses to run as root.  When we are root (CI), ``initdb`` and
``pg_ctl`` run as an unprivileged user: ``postgres`` if the system has it,
otherwise a system user ``referral-broker`` that we create.  See
``_server_user`` and ``RELOCATION_BASE`` for the details.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

__all__ = [
    "PostgresServer",
    "RedisServer",
    "ServerUnavailable",
    "ensure_installed",
    "find_postgres_bin",
    "find_redis_server",
    "free_port",
    "start_postgres",
    "start_redis",
    "wait_for_port",
]

LOOPBACK = "127.0.0.1"
# The machine's shared servers.  Private servers never listen there, and
# nothing here ever connects there.
SHARED_PORTS = frozenset({5432, 6379})

POSTGRES_PROGRAMS = ("initdb", "pg_ctl", "postgres", "pg_dump", "psql")
_DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")
_REDIS_FALLBACK_DIRS = (Path("/usr/bin"), Path("/usr/local/bin"), Path("/usr/sbin"))
_FALLBACK_USER = "referral-broker"

_START_ATTEMPTS = 5  # fresh ports tried when the chosen one is taken before we bind it
_PG_CTL_TIMEOUT_S = 60
_REDIS_START_TIMEOUT_S = 15.0
_REDIS_STOP_TIMEOUT_S = 10.0
_LOG_TAIL_LINES = 20
# sun_path is 108 bytes on Linux, one of which is the terminating NUL.
_SOCKET_PATH_MAX = 107
_ADDRESS_IN_USE = "Address already in use"
_INSTALL_HINT = (
    "Install the server binaries, e.g. on Debian/Ubuntu as root: "
    "`apt-get install -y postgresql redis-server` "
    "(or call referral_broker.cli.localservers.ensure_installed() as root)."
)


class ServerUnavailable(RuntimeError):
    """A private server could not be found, installed, started or stopped."""


class _PortTaken(ServerUnavailable):
    """The port was free when chosen but someone else bound it first."""


# --------------------------------------------------------------------------- ports


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (never 5432 or 6379).

    Somebody may take it before our server binds it; the ``start_*`` functions
    retry with a new port when that happens.
    """
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port = int(sock.getsockname()[1])
        if port not in SHARED_PORTS:
            return port
    raise ServerUnavailable("the kernel handed out no usable ephemeral port on 127.0.0.1")


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Poll until something accepts TCP connections on host:port, or raise."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        remaining = deadline - time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=max(0.05, min(1.0, remaining))):
                return
        except OSError as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            raise ServerUnavailable(
                f"nothing accepted connections on {host}:{port} within {timeout:.1f}s (last error: {last_error})"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _check_port(port: int) -> None:
    if not 0 < port < 65536:
        raise ValueError(f"not a TCP port: {port}")
    if port in SHARED_PORTS:
        raise ServerUnavailable(
            f"port {port} belongs to the machine's shared server; private servers must use another port "
            "(pass port=None to get a free one)"
        )


# ------------------------------------------------------------------------ binaries


def _version_key(directory: Path) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in directory.name.split("."))
    except ValueError:
        return None


def _debian_pg_bindirs() -> list[Path]:
    """/usr/lib/postgresql/*/bin, highest version first."""
    versioned: list[tuple[tuple[int, ...], Path]] = []
    if _DEBIAN_PG_ROOT.is_dir():
        for child in _DEBIAN_PG_ROOT.iterdir():
            key = _version_key(child)
            if key is not None and (child / "bin").is_dir():
                versioned.append((key, child / "bin"))
    return [bindir for _, bindir in sorted(versioned, reverse=True)]


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_postgres_bin(name: str) -> Path:
    """Locate a PostgreSQL program (initdb, pg_ctl, postgres, pg_dump, psql, ...).

    Searches PATH first, then /usr/lib/postgresql/*/bin (Debian keeps the
    server programs there, off PATH), highest version first.
    """
    if not name or "/" in name or name in {".", ".."}:
        raise ServerUnavailable(f"not a program name: {name!r}")
    found = shutil.which(name)
    if found is not None:
        return Path(found)
    bindirs = _debian_pg_bindirs()
    for bindir in bindirs:
        candidate = bindir / name
        if _is_executable(candidate):
            return candidate
    looked = ", ".join(str(d) for d in bindirs) or f"{_DEBIAN_PG_ROOT}/*/bin (none present)"
    raise ServerUnavailable(f"PostgreSQL program {name!r} not found on PATH or in {looked}. {_INSTALL_HINT}")


def find_redis_server() -> Path:
    """Locate redis-server: PATH first, then the usual system directories."""
    found = shutil.which("redis-server")
    if found is not None:
        return Path(found)
    for directory in _REDIS_FALLBACK_DIRS:
        candidate = directory / "redis-server"
        if _is_executable(candidate):
            return candidate
    raise ServerUnavailable(f"redis-server not found on PATH or in /usr/bin, /usr/local/bin. {_INSTALL_HINT}")


def _missing_programs() -> list[str]:
    missing: list[str] = []
    for name in POSTGRES_PROGRAMS:
        try:
            find_postgres_bin(name)
        except ServerUnavailable:
            missing.append(name)
    try:
        find_redis_server()
    except ServerUnavailable:
        missing.append("redis-server")
    return missing


def ensure_installed() -> None:
    """Make sure the PostgreSQL and Redis binaries are present.

    If some are missing and we are root on a machine with apt-get, install the
    ``postgresql`` and ``redis-server`` packages non-interactively; otherwise
    raise ServerUnavailable saying what to install.
    """
    missing = _missing_programs()
    if not missing:
        return
    apt_get = shutil.which("apt-get")
    if os.geteuid() != 0 or apt_get is None:
        why = "we are not root" if os.geteuid() != 0 else "apt-get is not available"
        raise ServerUnavailable(
            f"missing programs: {', '.join(missing)}; cannot install them because {why}. "
            "Install PostgreSQL (server and client) and Redis, e.g. on Debian/Ubuntu: "
            "`sudo apt-get install -y postgresql redis-server`; on macOS: `brew install postgresql redis`."
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Wait for a concurrent apt/dpkg run rather than failing on its lock.
    lock_wait = ["-o", "DPkg::Lock::Timeout=300"]
    for args in (["update"], ["install", "-y", "postgresql", "redis-server"]):
        result = subprocess.run(  # noqa: S603 - fixed argv, absolute apt-get path, no shell
            [apt_get, *lock_wait, *args],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            timeout=1800,
        )
        if result.returncode != 0:
            raise ServerUnavailable(
                f"`apt-get {' '.join(args)}` failed with exit status {result.returncode}:\n"
                + _tail(result.stdout + result.stderr)
            )
    still_missing = _missing_programs()
    if still_missing:
        raise ServerUnavailable(
            f"installed postgresql and redis-server but still missing: {', '.join(still_missing)}. " + _INSTALL_HINT
        )


# ------------------------------------------------------------------ helpers, users


def _tail(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def _log_size(log: Path) -> int:
    try:
        return log.stat().st_size
    except FileNotFoundError:
        return 0


def _read_log(log: Path, offset: int = 0) -> str:
    try:
        with log.open("rb") as fh:
            fh.seek(offset)
            return fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def _log_tail(log: Path) -> str:
    text = _read_log(log)
    if not text:
        return f"({log} is empty or missing)"
    return f"last {_LOG_TAIL_LINES} lines of {log}:\n{_tail(text)}"


@dataclass(frozen=True)
class _ServerUser:
    name: str
    uid: int
    gid: int
    home: str


def _server_user() -> _ServerUser | None:
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
        return _ServerUser(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)
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
    return _ServerUser(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def _traversable(directory: Path, user: _ServerUser) -> bool:
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
        if _postmaster_pid(cluster) is None:
            shutil.rmtree(entry, ignore_errors=True)


def _cluster_dir(requested: Path, user: _ServerUser | None) -> Path:
    """Where the cluster for *requested* lives: normally *requested* itself."""
    requested = Path(os.path.abspath(requested))
    if user is None:
        return requested.resolve()
    requested.parent.mkdir(parents=True, exist_ok=True)
    real = requested.resolve()
    if _traversable(real.parent, user):
        return real
    return _relocate(requested.parent.resolve() / requested.name)


def _chown_tree(root: Path, user: _ServerUser) -> None:
    """chown -R, touching only entries not yet owned by *user* (cheap on re-use)."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (dirpath, *(os.path.join(dirpath, n) for n in (*dirnames, *filenames))):
            try:
                st = os.lstat(name)
                if st.st_uid != user.uid or st.st_gid != user.gid:
                    os.lchown(name, user.uid, user.gid)
            except FileNotFoundError:
                continue


def _server_env(user: _ServerUser | None) -> dict[str, str]:
    # PG* variables of the caller (PGDATA, PGPORT, PGHOST, ...) must not steer
    # our private server or point our tools at the shared one.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"  # stable, parseable messages
    if user is not None:
        env.update(HOME=user.home, USER=user.name, LOGNAME=user.name)
    return env


def _run(args: list[str], user: _ServerUser | None, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
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


def _process_is(pid: int, comm: str, cwd: Path) -> bool:
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


def _read_pid(pidfile: Path) -> int | None:
    try:
        first = pidfile.read_text().split("\n", 1)[0].strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return int(first) if first.isdigit() else None


# ------------------------------------------------------------------------ postgres


def _postmaster_pid(data_dir: Path) -> int | None:
    """PID of the postmaster running on *data_dir*, or None (no/stale pid file)."""
    pid = _read_pid(data_dir / "postmaster.pid")
    if pid is not None and _process_is(pid, "postgres", data_dir):
        return pid
    return None


def _postmaster_port(data_dir: Path) -> int | None:
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None


def _socket_dir_for(data_dir: Path, user: _ServerUser | None) -> tuple[Path, bool]:
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


@dataclass
class PostgresServer:
    """A private PostgreSQL cluster in ``data_dir``, listening on 127.0.0.1:``port``.

    Authentication is ``trust``: acceptable because it listens on loopback only
    and exists for development and tests.

    ``data_dir`` is the cluster's real directory: the path given to
    ``start_postgres``, except when running as root with a path the PostgreSQL
    user cannot reach (pytest's tmp dirs); then it is a private directory under
    ``RELOCATION_BASE`` and the given path is a symlink to it.
    """

    url: str
    port: int
    data_dir: Path
    durable: bool = True
    socket_dir: Path | None = None
    _temporary_socket_dir: bool = field(default=False, repr=False, compare=False)

    def database_url(self, name: str) -> str:
        """The URL of database *name* on this server."""
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/{quote(name, safe='')}"

    def is_running(self) -> bool:
        return _postmaster_pid(self.data_dir) is not None

    def start(self) -> None:
        """Start (again) on the same port and data; a no-op if it already runs there."""
        _check_port(self.port)
        if _postmaster_pid(self.data_dir) is not None:
            if _postmaster_port(self.data_dir) == self.port:
                return
            # A leftover from an earlier run (e.g. a `make dev` killed before
            # its clean-up) on another port: the data dir is ours, stop it.
            self._stop("fast", any_port=True)
        pg_ctl = find_postgres_bin("pg_ctl")
        user = _prepare_data_dir(self.data_dir)
        # No live postmaster of ours is behind a pid file still present here
        # (checked above), so it is stale: remove it, lest PostgreSQL take a
        # recycled pid of another `postgres`-user process for a running server.
        # Same for the socket and its lock file, which PostgreSQL checks the
        # same way (and a killed postmaster that is still a zombie passes
        # that check).  Only postmasters of this data dir put sockets here.
        for stale in (self.data_dir / "postmaster.pid", *self.data_dir.glob(".s.PGSQL.*")):
            stale.unlink(missing_ok=True)
        self._release_socket_dir()
        self.socket_dir, self._temporary_socket_dir = _socket_dir_for(self.data_dir, user)
        options = [
            f"-p {self.port}",
            f"-k {shlex.quote(str(self.socket_dir))}",
            f"-c listen_addresses={LOOPBACK}",
        ]
        if not self.durable:
            # Fast but unsafe: an OS crash (not merely a killed server) may
            # lose or corrupt data, and synchronous_commit=off may lose the
            # last commits even on `stop("immediate")`.
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        log = self.data_dir / "server.log"
        log_start = _log_size(log)
        result = _run(
            [
                str(pg_ctl), "start", "-D", str(self.data_dir), "-l", str(log),
                "-w", "-t", str(_PG_CTL_TIMEOUT_S), "-o", " ".join(options),
            ],
            user,
            cwd=self.data_dir,
            timeout=_PG_CTL_TIMEOUT_S + 30,
        )  # fmt: skip
        if result.returncode != 0:
            self._release_socket_dir()
            message = (
                f"PostgreSQL in {self.data_dir} failed to start on port {self.port} "
                f"(pg_ctl exit status {result.returncode}: {(result.stdout + result.stderr).strip()})\n"
                + _log_tail(log)
            )
            if _ADDRESS_IN_USE in _read_log(log, log_start):
                raise _PortTaken(message)
            raise ServerUnavailable(message)
        wait_for_port(LOOPBACK, self.port, timeout=10.0)

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m MODE`` (smart, fast or immediate); a no-op when not running.

        Only the server on this object's port is stopped: if another
        ``start_postgres`` has since replaced it in the same data dir, this
        object stands for a server that is gone and leaves the new one alone.
        """
        self._stop(mode, any_port=False)

    def _stop(self, mode: str, *, any_port: bool) -> None:
        if mode not in {"smart", "fast", "immediate"}:
            raise ValueError(f"unknown shutdown mode {mode!r}; use smart, fast or immediate")
        if _postmaster_pid(self.data_dir) is None or (not any_port and _postmaster_port(self.data_dir) != self.port):
            self._release_socket_dir()
            return
        # -W and our own polling: pg_ctl -w polls only every 100 ms, which
        # would be most of the time a stop takes.
        result = _run(
            [str(find_postgres_bin("pg_ctl")), "stop", "-D", str(self.data_dir), "-m", mode, "-W"],
            _server_user(),
            cwd=self.data_dir,
            timeout=_PG_CTL_TIMEOUT_S,
        )
        deadline = time.monotonic() + _PG_CTL_TIMEOUT_S
        while _postmaster_pid(self.data_dir) is not None:
            if result.returncode != 0 or time.monotonic() > deadline:
                raise ServerUnavailable(
                    f"could not stop PostgreSQL in {self.data_dir} ({mode}): "
                    f"{(result.stdout + result.stderr).strip() or 'timed out'}\n"
                    + _log_tail(self.data_dir / "server.log")
                )
            time.sleep(0.005)
        self._release_socket_dir()

    def _release_socket_dir(self) -> None:
        if self._temporary_socket_dir and self.socket_dir is not None:
            # After an immediate stop the socket and its lock file may remain.
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            self.socket_dir, self._temporary_socket_dir = None, False


def _prepare_data_dir(data_dir: Path) -> _ServerUser | None:
    """Create *data_dir*, and when root hand it to the unprivileged user."""
    user = _server_user()
    if user is not None and not _traversable(data_dir.parent, user):
        raise ServerUnavailable(
            f"the PostgreSQL user {user.name!r} cannot reach {data_dir}: a directory above it "
            "lacks search permission for that user (did something chmod it?)"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    if user is not None:
        _chown_tree(data_dir, user)
    return user


def _initdb(data_dir: Path, user: _ServerUser | None) -> None:
    if (data_dir / "PG_VERSION").exists():
        return  # an initialised cluster: re-use it
    if any(data_dir.iterdir()):
        raise ServerUnavailable(
            f"{data_dir} is neither empty nor a PostgreSQL data directory (no PG_VERSION); "
            "refusing to initialise a cluster there"
        )
    initdb = find_postgres_bin("initdb")
    result = _run(
        [
            str(initdb), "-D", str(data_dir), "-A", "trust", "-U", "postgres",
            "--no-sync", "-E", "UTF8", "--locale=C",
        ],
        user,
        cwd=data_dir,
        timeout=300,
    )  # fmt: skip
    if result.returncode != 0:
        raise ServerUnavailable(
            f"initdb failed for {data_dir} (exit status {result.returncode}):\n" + _tail(result.stdout + result.stderr)
        )


_Server = TypeVar("_Server", "PostgresServer", "RedisServer")


def _start_on_a_port(port: int | None, make: Callable[[int], _Server]) -> _Server:
    """Start on `port`, or on a free port, trying a fresh one if another process binds it first."""
    attempts = 1 if port is not None else _START_ATTEMPTS
    for attempt in range(attempts):
        server = make(port if port is not None else free_port())
        try:
            server.start()
        except _PortTaken:
            if attempt + 1 >= attempts:
                raise
            continue
        return server
    raise AssertionError("unreachable")  # pragma: no cover


def start_postgres(data_dir: Path, port: int | None = None, *, durable: bool = True) -> PostgresServer:
    """Start a private PostgreSQL in *data_dir* (initialised on first use, re-used after).

    The server log is ``server.log`` in the data dir.  As root, see
    ``PostgresServer`` for when the cluster is relocated.

    With ``port=None`` a free port is chosen, and a fresh one tried if another
    process binds it first.  ``durable=False`` turns off fsync,
    synchronous_commit and full_page_writes: faster, but committed data may be
    lost on a crash; crash tests need the default.
    """
    if port is not None:
        _check_port(port)
    find_postgres_bin("pg_ctl")  # fail early, with the install hint
    data_dir = _cluster_dir(Path(data_dir), _server_user())
    _initdb(data_dir, _prepare_data_dir(data_dir))
    return _start_on_a_port(
        port,
        lambda chosen: PostgresServer(
            url=f"postgresql://postgres@{LOOPBACK}:{chosen}/postgres", port=chosen, data_dir=data_dir, durable=durable
        ),
    )


# --------------------------------------------------------------------------- redis


@dataclass
class RedisServer:
    """A private, non-persistent redis-server on 127.0.0.1:``port``, run from ``data_dir``."""

    url: str
    port: int
    data_dir: Path
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.is_running() and self._process is not None else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start (again) on the same port; a no-op if it is running."""
        _check_port(self.port)
        if self.is_running():
            return
        redis_server = find_redis_server()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pidfile = self.data_dir / "redis.pid"
        _stop_leftover_redis(pidfile, self.data_dir)
        log = self.data_dir / "redis.log"
        log_start = _log_size(log)
        args = [
            str(redis_server),
            "--port", str(self.port),
            "--bind", LOOPBACK,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            "--pidfile", str(pidfile),
        ]  # fmt: skip
        with log.open("ab") as log_file:
            # Own process group: a Ctrl-C at the terminal of a parent `make dev`
            # reaches only the caller, whose clean-up then stops us in order.
            self._process = subprocess.Popen(  # noqa: S603 - argv of an absolute redis-server path, no shell
                args,
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                process_group=0,
            )
        try:
            _wait_for_redis(self._process, self.port, _REDIS_START_TIMEOUT_S)
        except ServerUnavailable as exc:
            self.kill()
            message = f"redis-server in {self.data_dir} failed to start on port {self.port}: {exc}\n" + _log_tail(log)
            if isinstance(exc, _PortTaken) or _ADDRESS_IN_USE in _read_log(log, log_start):
                raise _PortTaken(message) from None
            raise ServerUnavailable(message) from None

    def stop(self) -> None:
        """SIGTERM and wait (SIGKILL after 10 s); a no-op when not running."""
        self._signal(signal.SIGTERM, _REDIS_STOP_TIMEOUT_S)

    def kill(self) -> None:
        """SIGKILL, for fault tests: nothing is saved, clients see the connection drop."""
        self._signal(signal.SIGKILL, _REDIS_STOP_TIMEOUT_S)

    def _signal(self, signum: signal.Signals, timeout: float) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            # Not yet reaped, so the pid (and its group id) cannot have been reused.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signum)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self._process = None


def _stop_leftover_redis(pidfile: Path, data_dir: Path) -> None:
    """Stop a redis-server an earlier, crashed run left in *data_dir*."""
    pid = _read_pid(pidfile)
    if pid is not None and _process_is(pid, "redis-server", data_dir):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + _REDIS_STOP_TIMEOUT_S
        while _process_is(pid, "redis-server", data_dir) and time.monotonic() < deadline:
            time.sleep(0.01)
        if _process_is(pid, "redis-server", data_dir):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(FileNotFoundError):
        pidfile.unlink()


def _redis_call(sock: socket.socket, command: bytes) -> bytes:
    """Send an inline command, return the raw reply (a simple or a bulk string)."""
    sock.sendall(command + b"\r\n")
    reply = b""
    while b"\r\n" not in reply:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("redis closed the connection")
        reply += chunk
    if reply.startswith(b"$"):
        header, _, body = reply.partition(b"\r\n")
        length = int(header[1:])
        while len(body) < length + 2:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            body += chunk
        return body[:length]
    return reply.split(b"\r\n", 1)[0]


def _wait_for_redis(process: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    """Poll until *process* answers PING on *port*; make sure it is really ours."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerUnavailable(f"redis-server exited with status {process.returncode}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1.0) as sock:
                reply = _redis_call(sock, b"PING")
                if reply == b"+PONG":
                    # Whoever answers must be our process, not someone who
                    # grabbed the port between free_port() and our bind.
                    info = _redis_call(sock, b"INFO server").decode("utf-8", "replace")
                    match = re.search(r"^process_id:(\d+)", info, re.MULTILINE)
                    if match is None or int(match.group(1)) != process.pid:
                        raise _PortTaken(f"another server answers on port {port}")
                    return
                last_error = reply.decode("utf-8", "replace")  # e.g. -LOADING
        except (OSError, ValueError) as exc:
            last_error = str(exc)
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    raise ServerUnavailable(f"no PONG within {timeout:.0f}s (last: {last_error})")


def start_redis(data_dir: Path, port: int | None = None) -> RedisServer:
    """Start a private redis-server (no persistence) with *data_dir* as its directory.

    With ``port=None`` a free port is chosen, and a fresh one tried if another
    process binds it first.
    """
    data_dir = Path(data_dir).resolve()
    if port is not None:
        _check_port(port)
    find_redis_server()  # fail early, with the install hint
    return _start_on_a_port(
        port, lambda chosen: RedisServer(url=f"redis://{LOOPBACK}:{chosen}/0", port=chosen, data_dir=data_dir)
    )
