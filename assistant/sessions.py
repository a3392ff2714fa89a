"""User sessions in Redis, each expiring on its own.

Two structures, written together in one MULTI transaction:

* ``assistant:session:<sha256(token)>`` holds the user id with a TTL. Redis expires it,
  so a lookup can never accept an expired session. Only the hash of the token is
  stored: a copy of the Redis data does not yield usable bearer tokens.
* ``assistant:sessions`` is a sorted set of the same hashes scored by expiry time, so
  ``active_sessions`` is one ``ZCOUNT now +inf``: O(log n) at every scrape, where a
  ``SCAN`` of the key prefix would walk every key of the database. Expired members are
  pruned on each login, which bounds the set by the logins of one TTL.
"""

from __future__ import annotations

import hashlib
import secrets
import time

import redis.asyncio as aioredis

from .redis_client import PREFIX, redis_available

SESSION_KEY = PREFIX + "session:"
EXPIRY_INDEX = PREFIX + "sessions"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    def __init__(self, redis: aioredis.Redis, ttl_seconds: float) -> None:
        self._redis = redis
        self.ttl_seconds = ttl_seconds

    async def create(self, user_id: int) -> str:
        """A new session for ``user_id``; returns its bearer token."""
        token = secrets.token_urlsafe(32)
        digest = _digest(token)
        now = time.time()
        with redis_available():
            async with self._redis.pipeline(transaction=True) as tx:
                tx.set(SESSION_KEY + digest, user_id, px=int(self.ttl_seconds * 1000))
                tx.zadd(EXPIRY_INDEX, {digest: now + self.ttl_seconds})
                tx.zremrangebyscore(EXPIRY_INDEX, "-inf", now)
                await tx.execute()
        return token

    async def user_id(self, token: str) -> int | None:
        """The user of a live session, or None when it is unknown or expired."""
        with redis_available():
            value = await self._redis.get(SESSION_KEY + _digest(token))
        return int(value) if value is not None else None

    async def delete(self, token: str) -> bool:
        """End a session; False when it did not exist (or had expired)."""
        digest = _digest(token)
        with redis_available():
            async with self._redis.pipeline(transaction=True) as tx:
                tx.delete(SESSION_KEY + digest)
                tx.zrem(EXPIRY_INDEX, digest)
                deleted, _ = await tx.execute()
        return bool(deleted)

    async def count_active(self) -> int:
        """Sessions that have not expired (the ``active_sessions`` gauge)."""
        with redis_available():
            return int(await self._redis.zcount(EXPIRY_INDEX, f"({time.time()}", "+inf"))
