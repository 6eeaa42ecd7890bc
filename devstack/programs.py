"""The product's programs (`referral-broker serve`, `worker`, `referral-clinic`) as processes, each stopped
by its own process id."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


def program(name: str) -> str:
    """The path of one of the product's programs, installed beside this Python."""
    return str(BIN / name)


@dataclass
class Program:
    """One running program whose output goes to a log file the caller can search (or to the terminal)."""

    args: list[str]
    env: dict[str, str]
    log: Path | None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> Program:
        if self.log is None:
            self.process = subprocess.Popen(self.args, env=self.env)  # noqa: S603 - the product's own programs
            return self
        with self.log.open("ab") as handle:
            self.process = subprocess.Popen(  # noqa: S603 - the product's own programs
                self.args, env=self.env, stdout=handle, stderr=subprocess.STDOUT
            )
        return self

    @property
    def name(self) -> str:
        """What the program is called in reports: its log file's name, or the program's."""
        return self.log.stem if self.log is not None else Path(self.args[0]).name

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"{self.args[0]} was not started")
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 25) -> None:
        """SIGTERM and wait for it to finish its work; SIGKILL after `timeout` seconds."""
        if self.process is None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log is not None and self.log.exists() else ""


def wait_for_http(url: str, program_: Program, timeout: float = 30) -> None:
    """Poll `url` until it answers 200; fail early, with the program's output, if the program exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if program_.process is not None and program_.process.poll() is not None:
            raise RuntimeError(f"{program_.args[0]} exited early:\n{program_.output()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout} s:\n{program_.output()[-3000:]}")


class ProgramFailed(RuntimeError):
    """A program run to its end exited non-zero; the message holds everything it printed."""


def run(
    args: list[str], env: dict[str, str], *, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a program to its end; with `check`, a non-zero exit raises with everything it printed."""
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)  # noqa: S603
    if check and result.returncode != 0:
        raise ProgramFailed(f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result
