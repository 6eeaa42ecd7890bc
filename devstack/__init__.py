"""The development machinery: never in the product's wheel (tests/test_wheel_contents.py holds that).

Private PostgreSQL and Redis servers started from the system's binaries, the product's programs as
processes, and the one launcher of the whole stack (`devstack.stack.Stack`) that `make dev`
(`python -m devstack`), the tests and the bench use. It is importable from the repository root
(pytest's `pythonpath = ["."]`; `python -m devstack` run from there).

Installing the system's PostgreSQL and Redis is `scripts/ensure-system-tools`, called by the Makefile.
"""

from devstack.binaries import find_postgres_bin, find_redis_server
from devstack.ports import SHARED_PORTS, ServerUnavailable, free_port, wait_for_port
from devstack.postgres import PostgresServer, start_postgres
from devstack.redis_server import RedisServer, start_redis

__all__ = [
    "SHARED_PORTS",
    "PostgresServer",
    "RedisServer",
    "ServerUnavailable",
    "find_postgres_bin",
    "find_redis_server",
    "free_port",
    "start_postgres",
    "start_redis",
    "wait_for_port",
]
