"""Starting and stopping the product's real programs in tests: `devstack.programs` does it; this module
adds what only a test asks of them, waiting for the database to show their work."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg

from devstack import free_port
from devstack.programs import Program, program, run, wait_for_http

__all__ = ["Program", "program", "run", "serving", "wait_for_http", "wait_for_value"]


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
