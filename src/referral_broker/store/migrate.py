"""A small runner for the plain-SQL migrations beside it: each file once, in name order, recorded.

Two processes may run it at once (a deploy's migration job and an operator): a transaction-level
advisory lock makes the second wait and then find nothing to do.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from referral_broker.store.pool import Connection

_LOCK_KEY = 0x5265_6642  # "ReFB": any fixed number shared by all runners


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("referral_broker.store") / "migrations"
    files = sorted((p.name, p.read_text()) for p in folder.iterdir() if p.name.endswith(".sql"))
    return files


async def apply_migrations(conn: Connection) -> list[str]:
    """Apply what has not run yet; return the names applied. A changed, already-applied file is an error."""
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   name text PRIMARY KEY, sha256 text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["name"]: r["sha256"] for r in await conn.fetch("SELECT name, sha256 FROM schema_migrations")}
        for name, sql in migration_files():
            digest = hashlib.sha256(sql.encode()).hexdigest()
            if name in done:
                if done[name] != digest:
                    raise RuntimeError(f"migration {name} was changed after it was applied; add a new one instead")
                continue
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (name, sha256) VALUES ($1, $2)", name, digest)
            applied.append(name)
    return applied
