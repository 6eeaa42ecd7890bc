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
``server_user`` and ``RELOCATION_BASE`` for the details.
"""

from __future__ import annotations

import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from devstack.binaries import find_postgres_bin
from devstack.pg_cluster import (
    cluster_dir,
    initdb,
    postmaster_pid,
    postmaster_port,
    prepare_data_dir,
    socket_dir_for,
)
from devstack.ports import LOOPBACK, PortTaken, ServerUnavailable, check_port, start_on_a_port, wait_for_port
from devstack.server_logs import log_size, log_tail, read_log
from devstack.server_user import run_as, server_user

_PG_CTL_TIMEOUT_S = 60
_ADDRESS_IN_USE = "Address already in use"


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
        return postmaster_pid(self.data_dir) is not None

    def start(self) -> None:
        """Start (again) on the same port and data; a no-op if it already runs there."""
        check_port(self.port)
        if postmaster_pid(self.data_dir) is not None:
            if postmaster_port(self.data_dir) == self.port:
                return
            # A leftover from an earlier run (e.g. a `make dev` killed before
            # its clean-up) on another port: the data dir is ours, stop it.
            self._stop("fast", any_port=True)
        pg_ctl = find_postgres_bin("pg_ctl")
        user = prepare_data_dir(self.data_dir)
        # No live postmaster of ours is behind a pid file still present here
        # (checked above), so it is stale: remove it, lest PostgreSQL take a
        # recycled pid of another `postgres`-user process for a running server.
        # Same for the socket and its lock file, which PostgreSQL checks the
        # same way (and a killed postmaster that is still a zombie passes
        # that check).  Only postmasters of this data dir put sockets here.
        for stale in (self.data_dir / "postmaster.pid", *self.data_dir.glob(".s.PGSQL.*")):
            stale.unlink(missing_ok=True)
        self._release_socket_dir()
        self.socket_dir, self._temporary_socket_dir = socket_dir_for(self.data_dir, user)
        options = [
            f"-p {self.port}",
            f"-k {shlex.quote(str(self.socket_dir))}",
            f"-c listen_addresses={LOOPBACK}",
            # Dynamic shared memory in files under the data directory, not in /dev/shm: a private server must
            # not die of what else cleans /dev/shm on the machine (systemd's RemoveIPC, a tool unmounting a
            # chroot's /dev), which showed here as "could not open shared memory segment" in every later test.
            "-c dynamic_shared_memory_type=mmap",
        ]
        if not self.durable:
            # Fast but unsafe: an OS crash (not merely a killed server) may
            # lose or corrupt data, and synchronous_commit=off may lose the
            # last commits even on `stop("immediate")`.
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        log = self.data_dir / "server.log"
        log_start = log_size(log)
        result = run_as(
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
                f"(pg_ctl exit status {result.returncode}: {(result.stdout + result.stderr).strip()})\n" + log_tail(log)
            )
            if _ADDRESS_IN_USE in read_log(log, log_start):
                raise PortTaken(message)
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
        if postmaster_pid(self.data_dir) is None or (not any_port and postmaster_port(self.data_dir) != self.port):
            self._release_socket_dir()
            return
        # -W and our own polling: pg_ctl -w polls only every 100 ms, which
        # would be most of the time a stop takes.
        result = run_as(
            [str(find_postgres_bin("pg_ctl")), "stop", "-D", str(self.data_dir), "-m", mode, "-W"],
            server_user(),
            cwd=self.data_dir,
            timeout=_PG_CTL_TIMEOUT_S,
        )
        deadline = time.monotonic() + _PG_CTL_TIMEOUT_S
        while postmaster_pid(self.data_dir) is not None:
            if result.returncode != 0 or time.monotonic() > deadline:
                raise ServerUnavailable(
                    f"could not stop PostgreSQL in {self.data_dir} ({mode}): "
                    f"{(result.stdout + result.stderr).strip() or 'timed out'}\n"
                    + log_tail(self.data_dir / "server.log")
                )
            time.sleep(0.005)
        self._release_socket_dir()

    def _release_socket_dir(self) -> None:
        if self._temporary_socket_dir and self.socket_dir is not None:
            # After an immediate stop the socket and its lock file may remain.
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            self.socket_dir, self._temporary_socket_dir = None, False


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
        check_port(port)
    find_postgres_bin("pg_ctl")  # fail early, with the install hint
    data_dir = cluster_dir(Path(data_dir), server_user())
    initdb(data_dir, prepare_data_dir(data_dir))
    return start_on_a_port(
        port,
        lambda chosen: PostgresServer(
            url=f"postgresql://postgres@{LOOPBACK}:{chosen}/postgres", port=chosen, data_dir=data_dir, durable=durable
        ),
    )
