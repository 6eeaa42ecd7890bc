"""The asyncpg pool, with the codecs the store modules expect."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

#: A connection, whether opened alone or borrowed from the pool; store functions that need a transaction take it.
Connection = asyncpg.Connection | PoolConnectionProxy
#: Anything a single statement can run on.
Executor = asyncpg.Connection | PoolConnectionProxy | asyncpg.Pool


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to reset when a connection goes back to the pool: the store keeps no session state.

    No `SET`, `LISTEN`, session-level advisory lock or cursor outside a transaction is used anywhere
    (advisory locks are `pg_advisory_xact_lock`). asyncpg still rolls back a transaction left open
    before calling this. Its default reset query (`pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`) cost one more round trip on every acquire (measured: docs/performance.md).
    """


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool: Any = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, reset=_keep_session, command_timeout=30
    )
    return pool  # type: ignore[no-any-return]
