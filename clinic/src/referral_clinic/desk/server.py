"""`referral-clinic desk`: serve the desk on 127.0.0.1, open the browser on its one-time link, pull meanwhile.

waitress serves (pure Python, runs on Windows, macOS and Linux). The listening socket is made here,
bound to 127.0.0.1 and nothing else, then handed to waitress, so no option or default can widen it.
One desk, or `watch`, per clinic folder: the folder's watcher lock (`folder_lock.take_for_watching`) is held
while the desk runs; its pulls take the folder's own lock as every pull does.
"""

from __future__ import annotations

import socket
import threading
import webbrowser
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from filelock import FileLock
from waitress import wasyncore
from waitress.server import create_server

from referral_clinic import watch
from referral_clinic.desk.app import HOLD_SECONDS, REFRESH_SECONDS, DeskApp
from referral_clinic.desk.front import FrontDesk
from referral_clinic.desk.guard import LOOPBACK, Guard
from referral_clinic.desk.states import StatesDamaged
from referral_clinic.desk.texts import Texts
from referral_clinic.folder_lock import ClinicDirBusy, ClinicDirUnusable, take_for_watching
from referral_clinic.keystore import ClinicDirProblem


class DeskCannotStart(Exception):
    """The message says why, for the terminal: another desk on the folder, a port in use, a damaged file.

    `busy` when another desk holds the folder (worth trying again later), not a problem to repair."""

    def __init__(self, message: str, *, busy: bool = False) -> None:
        super().__init__(message)
        self.busy = busy


@dataclass
class RunningDesk:
    front: FrontDesk
    guard: Guard
    server: Any  # waitress's server
    lock: FileLock
    thread: threading.Thread | None = None
    stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.socket.getsockname()[:2]
        return host, port

    def serve(self) -> None:
        """waitress's loop, a turn at a time, so that `stop` ends it even while browsers keep connections open."""
        try:
            while not self.stopping.is_set():
                self.server.asyncore.loop(timeout=0.2, map=self.server._map, use_poll=True, count=1)
        finally:
            self.server.task_dispatcher.shutdown()
            wasyncore.close_all(self.server._map)

    def serve_in_background(self) -> RunningDesk:
        self.thread = threading.Thread(target=self.serve, name="referral-desk-http", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.front.stop()
        if self.thread is not None:
            self.thread.join(timeout=10)
        self.lock.release()


def open_desk(
    folder: Path,
    outdir: Path,
    *,
    lang: str,
    port: int = 0,
    transport: httpx.BaseTransport | None = None,
    interval: float | None = None,
    refresh_seconds: int = REFRESH_SECONDS,
    hold_seconds: float = HOLD_SECONDS,
) -> RunningDesk:
    """Take the folder's desk lock, bind the loopback port and start pulling (once unlocked)."""
    if not folder.is_dir():
        raise DeskCannotStart(f"{folder} does not exist; create it with `referral-clinic init`")
    if outdir.exists() and not outdir.is_dir():
        raise DeskCannotStart(f"{outdir} exists and is not a folder")
    try:
        lock = take_for_watching(folder)
    except ClinicDirBusy:
        raise DeskCannotStart(
            f"another desk is already open on {folder}, or `referral-clinic watch` pulls for it: use the desk's "
            "browser tab, or close the other one (Ctrl-C in its window) and start this one again",
            busy=True,
        ) from None
    except ClinicDirUnusable as exc:
        raise DeskCannotStart(str(exc)) from None
    try:
        listener = _loopback_socket(port)
        try:
            front = FrontDesk(folder, outdir, Texts(lang), transport=transport, interval=interval)
        except (StatesDamaged, ClinicDirProblem) as exc:
            listener.close()
            raise DeskCannotStart(str(exc)) from None
        guard = Guard(port=listener.getsockname()[1])
        app = DeskApp(front, guard, refresh_seconds=refresh_seconds, hold_seconds=hold_seconds)
        server = create_server(app, sockets=[listener], threads=4, ident="referral-clinic")
        front.start()
        return RunningDesk(front, guard, server, lock)
    except BaseException:
        lock.release()
        raise


def _loopback_socket(port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind((LOOPBACK, port))
    except OSError as exc:
        listener.close()
        raise DeskCannotStart(f"cannot listen on {LOOPBACK}:{port}: {exc.strerror}; choose another --port") from None
    listener.listen(64)
    return listener


def run(
    folder: Path,
    outdir: Path,
    *,
    lang: str,
    port: int,
    browser: bool,
    transport: httpx.BaseTransport | None = None,
    interval: float | None = None,
) -> int:
    """Serve until Ctrl-C or SIGTERM; prints the one-time link (it opens the desk once, on this computer)."""
    desk = open_desk(folder, outdir, lang=lang, port=port, transport=transport, interval=interval)
    url = desk.guard.start_url
    print(f"the desk is open at {desk.guard.origin} (stop it with Ctrl-C)")
    print(f"if no browser opened, open this link once, on this computer: {url}", flush=True)
    if browser:
        webbrowser.open(url)
    stopper = watch.Stopper()
    with stopper.installed():
        desk.serve_in_background()
        try:
            while not stopper.event.wait(0.5):
                pass
        finally:
            desk.stop()
    return 0
