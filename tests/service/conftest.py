"""Real PostgreSQL and Redis for the sample service's tests (``tests/service``).

Fixtures:

``postgres`` (session) -> ``backends.Postgres``
    One throwaway PostgreSQL cluster (Debian's newest ``/usr/lib/postgresql/*/bin``) on a free
    port of 127.0.0.1, superuser ``postgres`` with a random password, scram-sha-256 for every
    connection and the socket directory 0700 (as the native runtime's: stack/native_postgres.py),
    fsync off. Attributes:
    ``.url`` ``postgresql+asyncpg://postgres:<password>@127.0.0.1:<port>/postgres`` (SQLAlchemy),
    ``.dsn`` ``postgresql://postgres:<password>@127.0.0.1:<port>/postgres`` (asyncpg/libpq),
    ``.password``,
    ``.port``, ``.pid`` (None while stopped), ``.running``, ``.log_path``, ``.log_tail()``.
    Methods: ``.stop()`` (SIGINT = fast shutdown, bounded wait, then SIGKILL),
    ``.kill()`` (SIGKILL, a crash), ``.start()`` (same port and data: committed rows survive),
    ``.reset_schema()`` (drop and recreate schema ``public``).
``redis`` (session) -> ``backends.Redis``
    One redis-server on a free port of 127.0.0.1 without persistence, with the stack's users
    (stack/redis_acl.py; random ``.passwords``). ``.url``
    ``redis://assistant:<password>@127.0.0.1:<port>/0`` (the app's user: keys ``assistant:*``),
    ``.url_of(user)``, ``.port``, ``.pid``, ``.running``, ``.stop()`` (SIGTERM), ``.kill()``,
    ``.start()`` (same port, **empty**: nothing is saved), ``.flushall()``, ``.command()``
    (an inline command as the tests' ``admin``).
``fresh_database`` (function) -> the same ``Postgres``
    Starts it again if an earlier test left it stopped, then ``reset_schema()``: the test sees
    an empty ``public`` schema (10-20 ms). Create engines/pools per test and dispose them at
    the end: a connection left in a transaction blocks the next reset.
``redis_flushed`` (function) -> the same ``Redis``
    Starts it again if stopped, then FLUSHALL.
``settings`` (function) -> ``assistant.Settings`` on those two, API token ``harness.TOKEN``;
    a test module overrides it to change fields (``harness.settings_for(..., **fields)``).
``service`` (function, async) -> ``harness.InProcess``: the app running in-process on
    ``settings``, lifespan included.

The servers start once per session (~1 s for initdb + postgres, ~0.03 s for redis) and are
stopped by PID at the session's end, whatever happens; an atexit hook and a parent-death
signal are the safety nets. A missing binary fails (never skips) with the apt command that
installs it. Mark tests with ``pytestmark = pytest.mark.service``. Everything is sync:
``.start()``/``.stop()`` block for ~0.03-0.12 s and may be called from async tests too;
``.reset_schema()`` uses ``asyncio.run``, so inside a running loop wrap it in
``asyncio.to_thread``. A test parameter named ``redis`` shadows redis-py's module: import
that as ``import redis.asyncio as aioredis``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import TypeVar

import pytest

from assistant import Settings
from tests.service.backends import Backend, BackendError, Postgres, Redis

from .harness import InProcess, serve, settings_for

B = TypeVar("B", bound=Backend)
T = TypeVar("T")


def _or_fail(call: Callable[[], T]) -> T:
    """``call()``, with a BackendError turned into a test failure (never a skip) that shows
    just its message (the apt command, or the server's log tail)."""
    try:
        return call()
    except BackendError as exc:
        message = str(exc)
    pytest.fail(message, pytrace=False)  # outside the except: no chained traceback


def _serve(factory: Callable[[], B]) -> Iterator[B]:
    """Create and start a server, yield it, and stop it (and remove its files) afterwards."""
    server = _or_fail(factory)
    try:
        _or_fail(server.start)
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    yield from _serve(Postgres)


@pytest.fixture(scope="session")
def redis() -> Iterator[Redis]:
    yield from _serve(Redis)


@pytest.fixture
def fresh_database(postgres: Postgres) -> Postgres:
    _or_fail(postgres.start)  # no-op unless an earlier test left it stopped
    _or_fail(postgres.reset_schema)
    return postgres


@pytest.fixture
def redis_flushed(redis: Redis) -> Redis:
    _or_fail(redis.start)  # no-op unless an earlier test left it stopped
    _or_fail(redis.flushall)
    return redis


@pytest.fixture
def settings(fresh_database: Postgres, redis_flushed: Redis) -> Settings:
    return settings_for(fresh_database.url, redis_flushed.url)


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[InProcess]:
    async with serve(settings) as running:
        yield running
