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


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool: Any = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, command_timeout=30
    )
    return pool  # type: ignore[no-any-return]
