"""Private PostgreSQL and Redis servers started from the system's binaries (devstack).

These tests start real servers on free ports in pytest's tmp dirs.  They never
connect to, bind, stop or flush the machine's shared servers on 5432/6379.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis

from devstack import (
    SHARED_PORTS,
    PostgresServer,
    RedisServer,
    ServerUnavailable,
    binaries,
    find_postgres_bin,
    find_redis_server,
    free_port,
    pg_cluster,
    ports,
    start_postgres,
    start_redis,
    wait_for_port,
)

Server = PostgresServer | RedisServer


@pytest.fixture
def cleanup() -> Iterator[Callable[[Server], Server]]:
    """Register servers to be stopped whatever happens in the test."""
    started: list[Server] = []

    def register(server: Server) -> Server:
        assert server.port not in SHARED_PORTS
        started.append(server)
        return server

    yield register
    errors: list[Exception] = []
    for server in reversed(started):
        try:
            server.stop()
        except Exception as exc:  # stop the others all the same
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def traversable_dir() -> Iterator[Path]:
    """A dir every user can reach (unlike pytest's 0700 tmp dirs), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="rb-lstest-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def fetch(url: str, sql: str, *args: object) -> list[Any]:
    async def run() -> list[Any]:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def execute(url: str, sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def occupied_port() -> socket.socket:
    """A listening socket on a free loopback port (the caller closes it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


# ---------------------------------------------------------------------- postgres


def test_postgres_runs_queries_and_committed_rows_survive_an_immediate_stop(
    tmp_path: Path, cleanup: Callable[[Server], Server]
) -> None:
    pg = start_postgres(tmp_path / "pg")
    cleanup(pg)
    assert pg.url == f"postgresql://postgres@127.0.0.1:{pg.port}/postgres"
    assert pg.data_dir == (tmp_path / "pg").resolve()
    assert (pg.data_dir / "PG_VERSION").exists()
    assert fetch(pg.url, "select 1")[0][0] == 1
    assert fetch(pg.url, "show fsync")[0][0] == "on"
    assert fetch(pg.url, "show listen_addresses")[0][0] == "127.0.0.1"

    execute(pg.url, "create table t (id int primary key, v text)")
    execute(pg.url, "insert into t values (1, 'committed')")
    pg.stop("immediate")  # a crash as far as the database is concerned
    assert not pg.is_running()
    pg.start()
    assert fetch(pg.url, "select v from t where id = 1")[0][0] == "committed"

    execute(pg.url, "create database other")
    assert pg.database_url("other") == f"postgresql://postgres@127.0.0.1:{pg.port}/other"
    assert fetch(pg.database_url("other"), "select current_database()")[0][0] == "other"

    pg.stop()
    pg.stop()  # harmless
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", pg.port), timeout=1).close()


def test_postgres_reuses_its_cluster_despite_a_stale_pid_file(
    tmp_path: Path, cleanup: Callable[[Server], Server]
) -> None:
    pg = start_postgres(tmp_path / "pg")
    cleanup(pg)
    execute(pg.url, "create table kept (x int); insert into kept values (42)")
    pg.stop()
    version_mtime = (pg.data_dir / "PG_VERSION").stat().st_mtime_ns

    # A pid file left by a crash, naming a live process that is not our
    # postmaster (this very test process): PostgreSQL alone would refuse.
    (pg.data_dir / "postmaster.pid").write_text(f"{os.getpid()}\n{pg.data_dir}\n0\n{pg.port}\n")
    again = start_postgres(tmp_path / "pg")
    cleanup(again)
    assert (again.data_dir / "PG_VERSION").stat().st_mtime_ns == version_mtime  # no new initdb
    assert fetch(again.url, "select x from kept")[0][0] == 42

    # A server still running in the data dir (say, a `make dev` killed before
    # its clean-up) is stopped and the cluster started afresh.
    third = start_postgres(tmp_path / "pg")
    cleanup(third)
    assert fetch(third.url, "select x from kept")[0][0] == 42
    if third.port != again.port:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", again.port), timeout=1).close()
        again.stop()  # stands for a server that is gone: must not stop `third`
        assert fetch(third.url, "select 1")[0][0] == 1


def test_postgres_restarts_after_its_postmaster_was_killed(tmp_path: Path, cleanup: Callable[[Server], Server]) -> None:
    pg = start_postgres(tmp_path / "pg")
    cleanup(pg)
    execute(pg.url, "create table t (x int); insert into t values (7)")
    postmaster = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pg.is_running() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (pg.data_dir / "postmaster.pid").exists()  # stale
    pg.stop()  # already dead: harmless
    pg.start()
    assert fetch(pg.url, "select x from t")[0][0] == 7


def test_postgres_refuses_a_foreign_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "pg").mkdir()
    (tmp_path / "pg" / "notes.txt").write_text("not a cluster")
    with pytest.raises(ServerUnavailable, match="neither empty nor a PostgreSQL data directory"):
        start_postgres(tmp_path / "pg")


# ------------------------------------------------------------------------- redis


def test_redis_set_get_kill_restart_loses_data(tmp_path: Path, cleanup: Callable[[Server], Server]) -> None:
    rd = start_redis(tmp_path / "redis")
    cleanup(rd)
    assert rd.url == f"redis://127.0.0.1:{rd.port}/0"
    client = redis.Redis.from_url(rd.url)
    try:
        assert client.set("k", "v")
        assert client.get("k") == b"v"
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
    finally:
        client.close()
    assert "Ready to accept connections" in (rd.data_dir / "redis.log").read_text()

    rd.kill()
    assert not rd.is_running()
    rd.start()
    client = redis.Redis.from_url(rd.url)
    try:
        assert client.get("k") is None  # nothing persisted
    finally:
        client.close()
    rd.stop()
    rd.stop()  # harmless
    rd.kill()  # harmless too


def test_redis_stop_copes_with_a_process_that_died_on_its_own(
    tmp_path: Path, cleanup: Callable[[Server], Server]
) -> None:
    rd = start_redis(tmp_path / "redis")
    cleanup(rd)
    assert rd.pid is not None
    os.kill(rd.pid, signal.SIGKILL)
    time.sleep(0.05)
    rd.stop()
    rd.start()  # the stale pid file is no obstacle
    client = redis.Redis.from_url(rd.url)
    try:
        assert client.ping()
    finally:
        client.close()


def test_a_leftover_redis_in_the_data_dir_is_replaced(tmp_path: Path, cleanup: Callable[[Server], Server]) -> None:
    first = start_redis(tmp_path / "redis")
    cleanup(first)
    second = start_redis(tmp_path / "redis")  # as after a `make dev` that died without clean-up
    cleanup(second)
    assert not first.is_running()
    client = redis.Redis.from_url(second.url)
    try:
        assert client.ping()
    finally:
        client.close()


# ------------------------------------------------------------------------- ports


def test_servers_started_at_once_get_different_ports(
    tmp_path: Path, traversable_dir: Path, cleanup: Callable[[Server], Server]
) -> None:
    # One data dir too deep for a Unix socket path (107 bytes): its socket
    # goes to a short private dir under /tmp instead.
    deep = traversable_dir / ("d" * 60) / ("e" * 60) / "pg"
    futures: list[Future[Any]] = []
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures.append(pool.submit(start_postgres, deep))
        futures.append(pool.submit(start_postgres, tmp_path / "pg-fast", durable=False))
        futures.append(pool.submit(start_redis, tmp_path / "r1"))
        futures.append(pool.submit(start_redis, tmp_path / "r2"))
    for future in futures:  # register every server that did start, then fail
        if future.exception() is None:
            cleanup(future.result())
    servers = [future.result() for future in futures]
    ports = {s.port for s in servers}
    assert len(ports) == 4
    assert not ports & SHARED_PORTS

    deep_pg, fast_pg = servers[0], servers[1]
    assert isinstance(deep_pg, PostgresServer) and isinstance(fast_pg, PostgresServer)
    assert deep_pg.data_dir == deep
    assert deep_pg.socket_dir is not None and str(deep_pg.socket_dir).startswith("/tmp/rb-pg-")
    assert (deep_pg.socket_dir / f".s.PGSQL.{deep_pg.port}").is_socket()
    assert fetch(deep_pg.url, "show fsync")[0][0] == "on"
    assert [fetch(fast_pg.url, f"show {name}")[0][0] for name in ("fsync", "synchronous_commit")] == [
        "off",
        "off",
    ]
    for server in servers[2:]:
        client = redis.Redis.from_url(server.url)
        try:
            assert client.ping()
        finally:
            client.close()

    socket_dir = deep_pg.socket_dir
    deep_pg.stop()
    assert not socket_dir.exists()


def test_a_port_taken_before_the_server_binds_it_is_replaced(
    tmp_path: Path, cleanup: Callable[[Server], Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = occupied_port()
    taken_port = taken.getsockname()[1]
    try:
        for start in (start_redis, start_postgres):
            handed_out = iter([taken_port])
            monkeypatch.setattr(ports, "free_port", lambda it=handed_out: next(it, 0) or free_port())
            server = cleanup(start(tmp_path / start.__name__))
            assert server.port != taken_port
    finally:
        taken.close()


def test_an_explicit_port_in_use_fails_with_the_log_tail(tmp_path: Path) -> None:
    taken = occupied_port()
    port = taken.getsockname()[1]
    try:
        with pytest.raises(ServerUnavailable, match="Address already in use") as redis_error:
            start_redis(tmp_path / "redis", port=port)
        assert "redis.log" in str(redis_error.value)
        with pytest.raises(ServerUnavailable, match="Address already in use") as pg_error:
            start_postgres(tmp_path / "pg", port=port)
        assert "server.log" in str(pg_error.value)
    finally:
        taken.close()


def test_the_shared_servers_ports_are_refused_without_touching_them(tmp_path: Path) -> None:
    with pytest.raises(ServerUnavailable, match="shared server"):
        start_redis(tmp_path / "redis", port=6379)
    with pytest.raises(ServerUnavailable, match="shared server"):
        start_postgres(tmp_path / "pg", port=5432)
    assert not (tmp_path / "pg").exists()


def test_free_port_is_bindable_and_never_a_shared_port() -> None:
    for _ in range(20):
        port = free_port()
        assert port not in SHARED_PORTS
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_wait_for_port_times_out_with_a_clear_error() -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(ServerUnavailable, match=f"127.0.0.1:{port}"):
        wait_for_port("127.0.0.1", port, timeout=0.3)
    assert time.monotonic() - started < 2


# ----------------------------------------------------------------------- binaries


def test_find_postgres_bin_finds_the_programs() -> None:
    for name in binaries.POSTGRES_PROGRAMS:
        path = find_postgres_bin(name)
        assert path.is_absolute() and os.access(path, os.X_OK), name
    assert os.access(find_redis_server(), os.X_OK)


def test_find_postgres_bin_explains_a_missing_program() -> None:
    with pytest.raises(ServerUnavailable) as excinfo:
        find_postgres_bin("pg_no_such_program")
    message = str(excinfo.value)
    assert "'pg_no_such_program' not found on PATH" in message
    assert "apt-get install -y postgresql redis-server" in message
    assert "make dev" in message and "scripts/ensure-system-tools" in message


def test_find_postgres_bin_falls_back_to_the_highest_debian_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for version in ("9.6", "10", "15", "not-a-version"):
        program = tmp_path / version / "bin" / "initdb"
        program.parent.mkdir(parents=True)
        program.write_text("#!/bin/sh\n")
        program.chmod(0o755)
    monkeypatch.setattr(binaries, "DEBIAN_PG_ROOT", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert find_postgres_bin("initdb") == tmp_path / "15" / "bin" / "initdb"
    with pytest.raises(ServerUnavailable, match="not found"):
        find_postgres_bin("pg_ctl")


def test_a_reachable_data_dir_is_used_in_place(traversable_dir: Path, cleanup: Callable[[Server], Server]) -> None:
    pg = start_postgres(traversable_dir / "pg")
    cleanup(pg)
    assert pg.data_dir == traversable_dir / "pg"
    assert not pg.data_dir.is_symlink()
    assert pg.socket_dir == pg.data_dir
    assert fetch(pg.url, "select 1")[0][0] == 1


def test_as_root_an_unreachable_data_dir_is_relocated_not_chmodded(
    tmp_path: Path, cleanup: Callable[[Server], Server]
) -> None:
    if os.geteuid() != 0:
        pytest.skip("only meaningful when the tests run as root")
    mode_before = stat.S_IMODE(tmp_path.stat().st_mode)
    pg = start_postgres(tmp_path / "pg")
    cleanup(pg)
    # The cluster belongs to an unprivileged user, not root.
    assert pg.data_dir.stat().st_uid != 0
    assert stat.S_IMODE(pg.data_dir.stat().st_mode) == 0o700
    # pytest's 0700 dirs are left alone; the given path links to the cluster.
    assert stat.S_IMODE(tmp_path.stat().st_mode) == mode_before
    assert pg.data_dir.is_relative_to(pg_cluster.RELOCATION_BASE)
    assert (tmp_path / "pg").is_symlink()
    assert (tmp_path / "pg").resolve() == pg.data_dir
    assert "ready to accept connections" in (tmp_path / "pg" / "server.log").read_text()
    execute(pg.url, "create table kept (x int); insert into kept values (1)")
    pg.stop()

    again = start_postgres(tmp_path / "pg")  # found again through the link: re-used
    cleanup(again)
    assert again.data_dir == pg.data_dir
    assert fetch(again.url, "select x from kept")[0][0] == 1


def test_relocated_clusters_nothing_links_to_are_removed(tmp_path: Path, cleanup: Callable[[Server], Server]) -> None:
    if os.geteuid() != 0:
        pytest.skip("only meaningful when the tests run as root")
    old = start_postgres(tmp_path / "old")
    cleanup(old)
    old.stop()
    (tmp_path / "old").unlink()  # as when pytest deletes an old tmp dir
    running = start_postgres(tmp_path / "running")
    cleanup(running)
    (tmp_path / "running").unlink()  # no link, but a live postmaster: kept

    new = start_postgres(tmp_path / "new")
    cleanup(new)
    assert not old.data_dir.parent.exists()
    assert running.data_dir.exists()
    running.stop()
