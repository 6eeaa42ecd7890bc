"""Starting and stopping the product's real programs in tests, each stopped by its own process id."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

BIN = Path(sys.executable).parent


def program(name: str) -> str:
    return str(BIN / name)


@dataclass
class Program:
    """One running program whose output goes to a log file the test can search."""

    args: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> Program:
        handle = self.log.open("ab")
        self.process = subprocess.Popen(self.args, env=self.env, stdout=handle, stderr=subprocess.STDOUT)
        handle.close()
        return self

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 20) -> None:
        if self.process is None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def wait_for_http(url: str, program_: Program, timeout: float = 30) -> None:
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


def run(args: list[str], env: dict[str, str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


async def wait_for_value(database_url: str, sql: str, expected: object, timeout: float = 60) -> None:
    """Poll `sql` until it returns `expected`: the programs under test work at their own pace."""
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = await conn.fetchval(sql)
            if value == expected:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{sql} gave {value}, expected {expected}")
    finally:
        await conn.close()


@contextmanager
def serving(
    database_url: str, redis_url: str, keys_dir: Path, folder: Path, **env: str
) -> Iterator[tuple[str, Program]]:
    """`referral-broker serve` on a free loopback port with `env` added, stopped at the end: (its URL, the program)."""
    from referral_broker.cli.localservers import free_port

    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    full_env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(folder),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REFERRAL_BROKER_KEYS_DIR": str(keys_dir),
        "REFERRAL_BROKER_PUBLIC_URL": url,
        **{k: v for k, v in os.environ.items() if k.startswith("COVERAGE_") or k == "PYTHONPATH"},
        **env,
    }
    server = Program([program("referral-broker"), "serve", "--port", str(port)], full_env, folder / "server.log")
    try:
        server.start()
        wait_for_http(f"{url}/healthz", server)
        yield url, server
    finally:
        server.stop()
