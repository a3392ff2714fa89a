"""The Redis client: short timeouts and one quick retry, so a dead Redis fails fast."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import ConstantBackoff

from .config import Settings
from .errors import DependencyUnavailable

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


@contextmanager
def redis_available() -> Iterator[None]:
    """Turn "cannot reach Redis" into ``DependencyUnavailable`` (a 503)."""
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        raise DependencyUnavailable("redis", exc) from exc
