"""Starting and stopping the product's real programs in tests: `devstack.programs` does it; this module
adds what only a test asks of them, waiting for the database to show their work."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from devstack.programs import Program, program, run, wait_for_http

__all__ = ["Program", "program", "run", "wait_for_http", "wait_for_value"]


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
