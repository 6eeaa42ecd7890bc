"""Fixtures of the fault suite: a Redis of the test's own (it will be killed) and the programs over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import devstack
from devstack.stack import Stack
from tests.faults.stack import fault_stack


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[devstack.RedisServer]:
    """A non-persistent redis-server on a free port, for this test alone: killing it loses everything."""
    server = devstack.start_redis(tmp_path / "redis")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def stack(clean_db: str, own_redis: devstack.RedisServer, tmp_path: Path) -> Iterator[Stack]:
    # The submission limit stays on (fail-open is part of what an outage tests), high enough for one address.
    # Jobs held on purpose inside their transaction must not be timed out by arq meanwhile.
    made = fault_stack(
        tmp_path,
        clean_db,
        own_redis.url,
        REFERRAL_BROKER_SUBMIT_RATE="1000",
        REFERRAL_BROKER_SUBMIT_REFUSED_RATE="0",
        REFERRAL_BROKER_JOB_TIMEOUT="60",
    )
    try:
        yield made
    finally:
        made.down()
