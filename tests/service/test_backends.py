"""The real PostgreSQL and Redis fixtures: reachable, stoppable, restartable on the same port."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.service.backends import (
    POSTGRES_APT,
    REDIS_APT,
    BackendError,
    Postgres,
    Redis,
    postgres_bin_dir,
    redis_server_bin,
)

pytestmark = pytest.mark.service

DOWN_TIMEOUT = 3.0  # a stopped server must be reported unreachable well within this


async def pg_fetch(dsn: str, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return await conn.fetch(query)
    finally:
        await conn.close(timeout=5)


async def pg_execute(dsn: str, script: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        await conn.execute(script)
    finally:
        await conn.close(timeout=5)


def assert_pg_unreachable(dsn: str) -> None:
    """Connecting fails with a connection error, fast (no hang until a timeout)."""
    started = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        asyncio.run(asyncpg.connect(dsn, timeout=DOWN_TIMEOUT))
    assert time.monotonic() - started < DOWN_TIMEOUT


def public_tables(dsn: str) -> list[str]:
    rows = asyncio.run(
        pg_fetch(dsn, "select tablename from pg_tables where schemaname = 'public' order by 1")
    )
    return [r["tablename"] for r in rows]


# --- postgres -----------------------------------------------------------------------------


def test_postgres_asyncpg_roundtrip(fresh_database: Postgres) -> None:
    pg = fresh_database
    assert pg.url == f"postgresql+asyncpg://postgres:{pg.password}@127.0.0.1:{pg.port}/postgres"
    assert pg.password not in repr(pg)
    assert pg.running
    assert isinstance(pg.pid, int)

    async def roundtrip() -> tuple[int, list[asyncpg.Record], str]:
        conn = await asyncpg.connect(pg.dsn, timeout=5)
        try:
            one = await conn.fetchval("select 1")
            await conn.execute("create table notes (id serial primary key, body text not null)")
            await conn.executemany("insert into notes (body) values ($1)", [("a",), ("b",)])
            rows = await conn.fetch("select id, body from notes order by id")
            version = await conn.fetchval("show server_version")
        finally:
            await conn.close(timeout=5)
        return one, rows, version

    one, rows, version = asyncio.run(roundtrip())
    assert one == 1
    assert [tuple(r) for r in rows] == [(1, "a"), (2, "b")]
    assert int(version.split(".")[0]) >= 15


def test_postgres_url_works_with_sqlalchemy(fresh_database: Postgres) -> None:
    async def query() -> int:
        engine = create_async_engine(fresh_database.url)
        try:
            async with engine.connect() as conn:
                return (await conn.execute(text("select 41 + 1"))).scalar_one()
        finally:
            await engine.dispose()

    assert asyncio.run(query()) == 42


def test_postgres_stop_then_start_keeps_data(fresh_database: Postgres) -> None:
    pg = fresh_database
    asyncio.run(pg_execute(pg.dsn, "create table kept (v int); insert into kept values (7);"))
    old_pid, port = pg.pid, pg.port

    started = time.monotonic()
    pg.stop()
    assert time.monotonic() - started < 5, "fast shutdown (SIGINT) took long"
    assert not pg.running
    assert pg.pid is None
    assert_pg_unreachable(pg.dsn)

    pg.start()
    assert pg.running
    assert pg.port == port
    assert pg.pid != old_pid
    assert asyncio.run(pg_fetch(pg.dsn, "select v from kept"))[0]["v"] == 7


def test_postgres_kill_then_start_recovers(fresh_database: Postgres) -> None:
    """A crash (SIGKILL of the process group) loses no committed row: crash recovery."""
    pg = fresh_database
    asyncio.run(pg_execute(pg.dsn, "create table crash (v int); insert into crash values (1);"))
    pg.kill()
    assert not pg.running
    assert_pg_unreachable(pg.dsn)
    pg.start()
    assert asyncio.run(pg_fetch(pg.dsn, "select v from crash"))[0]["v"] == 1


@pytest.mark.parametrize("run", [1, 2])
def test_fresh_database_starts_empty(fresh_database: Postgres, run: int) -> None:
    assert public_tables(fresh_database.dsn) == []
    asyncio.run(pg_execute(fresh_database.dsn, "create table leftover (run int)"))


def test_fresh_database_restarts_a_stopped_server(
    postgres: Postgres, request: pytest.FixtureRequest
) -> None:
    postgres.stop()
    pg = request.getfixturevalue("fresh_database")
    assert pg is postgres
    assert pg.running
    assert public_tables(pg.dsn) == []


# --- redis --------------------------------------------------------------------------------


def test_redis_roundtrip_with_ttl(redis_flushed: Redis) -> None:
    password = redis_flushed.passwords["assistant"]
    assert redis_flushed.url == f"redis://assistant:{password}@127.0.0.1:{redis_flushed.port}/0"

    async def roundtrip() -> tuple[bytes | None, int]:
        client = aioredis.from_url(redis_flushed.url, socket_timeout=5)
        try:
            await client.set("assistant:greeting", "hello", ex=30)
            greeting = await client.get("assistant:greeting")
            return greeting, await client.ttl("assistant:greeting")
        finally:
            await client.aclose()

    value, ttl = asyncio.run(roundtrip())
    assert value == b"hello"
    assert 0 < ttl <= 30


def test_redis_stop_then_start_is_empty(redis_flushed: Redis) -> None:
    """--save '' and no AOF: a restarted Redis has lost every key (by design)."""
    r = redis_flushed

    async def client_call(*command: str) -> object:
        client = aioredis.from_url(r.url, socket_connect_timeout=DOWN_TIMEOUT, socket_timeout=5)
        try:
            return await client.execute_command(*command)
        finally:
            await client.aclose()

    assert asyncio.run(client_call("SET", "assistant:k", "v"))
    old_pid, port = r.pid, r.port
    r.stop()
    assert not r.running
    assert r.pid is None

    started = time.monotonic()
    with pytest.raises(aioredis.ConnectionError):
        asyncio.run(client_call("PING"))
    assert time.monotonic() - started < DOWN_TIMEOUT

    r.start()
    assert r.port == port
    assert r.pid != old_pid
    assert asyncio.run(client_call("GET", "assistant:k")) is None
    assert asyncio.run(client_call("DBSIZE")) == 0


@pytest.mark.parametrize("run", [1, 2])
def test_redis_flushed_starts_empty(redis_flushed: Redis, run: int) -> None:
    async def dbsize_then_set() -> int:
        client = aioredis.from_url(redis_flushed.url, socket_timeout=5)
        try:
            size = await client.dbsize()
            await client.set(f"assistant:left-{run}", "x")
            return int(size)
        finally:
            await client.aclose()

    assert asyncio.run(dbsize_then_set()) == 0


# --- failures -----------------------------------------------------------------------------


def test_start_failure_reports_the_log(redis: Redis) -> None:
    """A server that cannot start (its port is taken) fails with its log's tail."""
    clash = Redis(port=redis.port)
    try:
        with pytest.raises(BackendError, match="Address already in use") as info:
            clash.start(timeout=5)
        assert "exited with" in str(info.value)
        assert not clash.running
    finally:
        clash.close()
    assert not clash.root.exists()


def test_missing_binaries_name_the_apt_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(BackendError) as pg_info:
        postgres_bin_dir(tmp_path)
    assert POSTGRES_APT in str(pg_info.value)

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BackendError) as redis_info:
        redis_server_bin()
    assert REDIS_APT in str(redis_info.value)
