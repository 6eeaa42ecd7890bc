"""Fixtures of the fault suite: a Redis of the test's own (it will be killed) and the programs over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from referral_broker.cli import localservers
from tests.faults.stack import Stack, program_env


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[localservers.RedisServer]:
    """A non-persistent redis-server on a free port, for this test alone: killing it loses everything."""
    server = localservers.start_redis(tmp_path / "redis")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def stack(clean_db: str, own_redis: localservers.RedisServer, tmp_path: Path) -> Iterator[Stack]:
    # The submission limit stays on (fail-open is part of what an outage tests), high enough for one address.
    # Jobs held on purpose inside their transaction must not be timed out by arq meanwhile.
    env = program_env(
        tmp_path, clean_db, own_redis.url, REFERRAL_BROKER_SUBMIT_RATE="1000", REFERRAL_BROKER_JOB_TIMEOUT="60"
    )
    made = Stack(tmp_path, env, clean_db, own_redis.url)
    try:
        yield made
    finally:
        made.stop()
