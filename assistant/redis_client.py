"""The Redis client: short timeouts and one quick retry, so a dead Redis fails fast; a Redis
that cannot take a command now (down, out of memory, failing to persist) is a 503."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis.asyncio as aioredis
import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.responses import Response
from redis.asyncio.retry import Retry
from redis.backoff import ConstantBackoff

from .config import Settings
from .errors import DependencyUnavailable, unavailable

PREFIX = "assistant:"


def create_redis(settings: Settings) -> aioredis.Redis:
    # redis-py's default retries 10 times with backoff (seconds of waiting on a dead server);
    # one retry is enough to replace a pooled connection that died with a Redis restart.
    return aioredis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_connect_timeout=settings.redis_timeout_seconds,
        socket_timeout=settings.redis_timeout_seconds,
        retry=Retry(ConstantBackoff(0.05), 1),
        client_name="assistant",
    )


# Replies that say "not now" rather than "wrong command". redis-py has classes for some: out of
# memory (maxmemory with noeviction), a replica (READONLY), a replica cut off from its
# primary (MASTERDOWN), a dataset loading (LOADING, a ConnectionError); others stay in the
# message: writes refused after a failed RDB save or AOF write (MISCONF), a long script (BUSY).
_NOT_NOW = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.MasterDownError,
    OSError,
)
_NOT_NOW_CODES = ("MISCONF ", "BUSY ")


def is_unavailable(exc: BaseException) -> bool:
    """Whether a Redis error means Redis cannot serve now (a 503 with Retry-After)."""
    if isinstance(exc, _NOT_NOW):
        return True
    # in a pipeline: "Command # 1 (SET ...) of pipeline caused error: ('MISCONF ...',)"
    reply = str(exc).rpartition("of pipeline caused error: ")[2].lstrip("('\"")
    return isinstance(exc, redis.exceptions.ResponseError) and reply.startswith(_NOT_NOW_CODES)


@contextmanager
def redis_available() -> Iterator[None]:
    """Turn "Redis cannot serve now" into ``DependencyUnavailable`` (a 503)."""
    try:
        yield
    except redis.exceptions.RedisError as exc:
        if not is_unavailable(exc):
            raise
        raise DependencyUnavailable("redis", exc) from exc
    except OSError as exc:
        raise DependencyUnavailable("redis", exc) from exc


def install(app: FastAPI) -> None:
    """The same answer for a Redis error raised outside ``redis_available``."""

    async def escaped(request: Request, exc: Exception) -> Response:
        if not is_unavailable(exc):
            raise exc  # a 500, logged with its traceback (the app's last handler)
        return await unavailable(request, DependencyUnavailable("redis", exc))

    app.add_exception_handler(redis.exceptions.RedisError, escaped)
