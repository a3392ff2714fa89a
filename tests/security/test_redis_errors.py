"""Finding 8: a Redis that refuses writes for a while (out of memory; persistence failing, the
MISCONF refusal that a failed AOF write or RDB save triggers) gets a 503 with Retry-After,
like a Redis that is down, not a 500. The service runs in-process on a real PostgreSQL and a
real redis-server of this module's own, which the tests drive into each state."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from tests.security.conftest import Attack
from tests.service.backends import Postgres, Redis
from tests.service.harness import API, InProcess, serve, settings_for

pytestmark = [pytest.mark.service, pytest.mark.anyio]

AttackFn = Callable[[str, str], Attack]


class SavingRedis(Redis):
    """redis-server that snapshots (``save 3600 1``) into ``data/``, which a test can take
    away: the next save fails, and Redis refuses writes until one succeeds."""

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _prepare(self) -> None:
        super()._prepare()
        self.data.mkdir(exist_ok=True)

    def _argv(self) -> list[str]:
        argv = super()._argv()
        argv[argv.index("--save") + 1] = "3600 1"
        argv[argv.index("--dir") + 1] = str(self.data)
        return argv


@pytest.fixture(scope="module")
def backends() -> Iterator[tuple[Postgres, SavingRedis]]:
    postgres, redis = Postgres(), SavingRedis()
    try:
        postgres.start()
        redis.start()
        yield postgres, redis
    finally:
        redis.close()
        postgres.close()


@pytest.fixture
async def service(backends: tuple[Postgres, SavingRedis]) -> AsyncIterator[InProcess]:
    postgres, redis = backends
    await asyncio.to_thread(postgres.reset_schema)  # it runs a loop of its own
    redis.flushall()
    async with serve(settings_for(postgres.url, redis.url)) as running:
        body = {"email": "ann@example.com", "name": "Ann"}
        assert (await running.client.post("/users", headers=API, json=body)).status_code == 201
        yield running


def config(redis: Redis, *args: str) -> None:
    reply = redis.command(("CONFIG SET " + " ".join(args)).encode())
    assert reply == b"+OK", reply


async def login(service: InProcess) -> tuple[int, str]:
    ann = {"email": "ann@example.com"}
    try:
        response = await service.client.post("/sessions", headers=API, json=ann)
    except Exception as exc:  # the in-process transport re-raises what became a 500
        return 500, f"none ({type(exc).__name__} unhandled)"
    return response.status_code, response.headers.get("retry-after", "")


async def test_redis_out_of_memory_is_a_503(
    service: InProcess, backends: tuple[Postgres, SavingRedis], attack: AttackFn
) -> None:
    _, redis = backends
    a = attack("log in while Redis is out of memory (OOM)", "503 with Retry-After")
    config(redis, "maxmemory", "1")
    try:
        status, retry_after = await login(service)
    finally:
        config(redis, "maxmemory", "0")
    a.happened = f"{status}, Retry-After {retry_after or 'none'}"
    assert status == 503 and retry_after.isdigit()
    assert (await login(service))[0] == 201  # and back by itself
    a.blocked = True


async def test_redis_failing_to_persist_is_a_503(
    service: InProcess, backends: tuple[Postgres, SavingRedis], attack: AttackFn
) -> None:
    _, redis = backends
    a = attack("log in while Redis cannot persist (MISCONF)", "503 with Retry-After")
    shutil.rmtree(redis.data)
    try:
        assert redis.command(b"BGSAVE") is not None
        wait_for(redis, b"rdb_last_bgsave_status:err")
        status, retry_after = await login(service)
    finally:
        redis.data.mkdir()
        config(redis, "save", '""')  # no snapshots: the refusal ends
    a.happened = f"{status}, Retry-After {retry_after or 'none'}"
    assert status == 503 and retry_after.isdigit()
    assert (await login(service))[0] == 201
    a.blocked = True


def wait_for(redis: Redis, marker: bytes, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    for _ in range(500):
        reply = redis.command(b"INFO persistence") or b""
        if marker in reply and b"rdb_bgsave_in_progress:0" in reply:
            return
        assert time.monotonic() < deadline, reply
        time.sleep(0.02)
