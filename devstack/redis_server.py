"""A private, non-persistent redis-server, started from the system's binary; spoken to with redis-py."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import redis

from devstack.binaries import find_redis_server
from devstack.ports import LOOPBACK, PortTaken, ServerUnavailable, check_port, start_on_a_port
from devstack.server_logs import log_size, log_tail, read_log
from devstack.server_user import process_is, read_pid

_REDIS_START_TIMEOUT_S = 15.0
_REDIS_STOP_TIMEOUT_S = 10.0
_ADDRESS_IN_USE = "Address already in use"


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
        check_port(self.port)
        if self.is_running():
            return
        redis_server = find_redis_server()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pidfile = self.data_dir / "redis.pid"
        _stop_leftover_redis(pidfile, self.data_dir)
        log = self.data_dir / "redis.log"
        log_start = log_size(log)
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
            message = f"redis-server in {self.data_dir} failed to start on port {self.port}: {exc}\n" + log_tail(log)
            if isinstance(exc, PortTaken) or _ADDRESS_IN_USE in read_log(log, log_start):
                raise PortTaken(message) from None
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
    pid = read_pid(pidfile)
    if pid is not None and process_is(pid, "redis-server", data_dir):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + _REDIS_STOP_TIMEOUT_S
        while process_is(pid, "redis-server", data_dir) and time.monotonic() < deadline:
            time.sleep(0.01)
        if process_is(pid, "redis-server", data_dir):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(FileNotFoundError):
        pidfile.unlink()


def _wait_for_redis(process: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    """Poll until *process* answers PING on *port*; make sure it is really ours."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerUnavailable(f"redis-server exited with status {process.returncode}")
        client = redis.Redis(host=LOOPBACK, port=port, socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            if client.ping():
                # Whoever answers must be our process, not someone who
                # grabbed the port between free_port() and our bind.
                info = cast("dict[str, object]", client.info("server"))  # the sync client answers at once
                if info.get("process_id") != process.pid:
                    raise PortTaken(f"another server answers on port {port}")
                return
        except (redis.RedisError, OSError) as exc:  # e.g. refused, or LOADING while it starts
            last_error = str(exc)
        finally:
            client.close()
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
        check_port(port)
    find_redis_server()  # fail early, with the install hint
    return start_on_a_port(
        port, lambda chosen: RedisServer(url=f"redis://{LOOPBACK}:{chosen}/0", port=chosen, data_dir=data_dir)
    )
