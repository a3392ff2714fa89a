"""Phone verification codes in Redis.

One hash per user, ``assistant:phone_code:<user id>``: the code, the phone it was sent
to, its expiry time and the wrong attempts so far. The key outlives the code by
``EXPIRED_GRACE_SECONDS``, so a late answer is told "expired" (and counted so) instead
of "no code requested". Deleting the key settles "verified" and "expired": of two
concurrent answers only the one whose ``DEL`` removed it is counted.
"""

from __future__ import annotations

import enum
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from .redis_client import PREFIX, redis_available

CODE_KEY = PREFIX + "phone_code:"
CODE_DIGITS = 6
EXPIRED_GRACE_SECONDS = 600.0

# Delivers a code to a user's phone: (user id, phone, code).
CodeSender = Callable[[int, str, str], Awaitable[None]]


class Outcome(enum.Enum):
    VERIFIED = "verified"
    FAILED = "failed"  # wrong code, attempts left
    EXHAUSTED = "exhausted"  # wrong code, no attempts left: the code is discarded
    EXPIRED = "expired"
    NOT_REQUESTED = "not_requested"  # no code pending (never sent, or long expired)
    RACED = "raced"  # a concurrent answer settled it first


@dataclass(frozen=True)
class Check:
    outcome: Outcome
    phone: str | None = None
    attempts_left: int = 0


class PhoneVerifications:
    def __init__(self, redis: aioredis.Redis, ttl_seconds: float, max_attempts: int) -> None:
        self._redis = redis
        self.ttl_seconds = ttl_seconds
        self.max_attempts = max_attempts
        # HINCRBY alone would recreate a key that just expired, without a TTL
        self._count_wrong_attempt = redis.register_script(
            "if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end "
            "return redis.call('HINCRBY', KEYS[1], 'attempts', 1)"
        )

    async def issue(self, user_id: int, phone: str) -> str:
        """Store a new code for ``user_id`` (replacing a pending one) and return it."""
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        record = {"code": code, "phone": phone, "expires_at": time.time() + self.ttl_seconds}
        key = CODE_KEY + str(user_id)
        with redis_available():
            async with self._redis.pipeline(transaction=True) as tx:
                tx.delete(key)
                tx.hset(key, mapping={**record, "attempts": 0})
                tx.pexpire(key, int((self.ttl_seconds + EXPIRED_GRACE_SECONDS) * 1000))
                await tx.execute()
        return code

    async def check(self, user_id: int, code: str) -> Check:
        """Compare ``code`` with the pending one; a settled code is removed."""
        key = CODE_KEY + str(user_id)
        with redis_available():
            record = await self._redis.hgetall(key)
            if not record:
                return Check(Outcome.NOT_REQUESTED)
            if time.time() >= float(record["expires_at"]):
                return await self._settle(key, Check(Outcome.EXPIRED))
            if hmac.compare_digest(code.encode(), record["code"].encode()):
                return Check(Outcome.VERIFIED, phone=record["phone"])
            attempts = await self._count_wrong_attempt(keys=[key])
            if attempts < 0:
                return Check(Outcome.RACED)  # expired or settled meanwhile
            left = max(self.max_attempts - attempts, 0)
            if left == 0:
                await self._redis.delete(key)
                return Check(Outcome.EXHAUSTED)
            return Check(Outcome.FAILED, attempts_left=left)

    async def consume(self, user_id: int) -> bool:
        """Remove the verified code; False when a concurrent answer removed it first."""
        with redis_available():
            return bool(await self._redis.delete(CODE_KEY + str(user_id)))

    async def _settle(self, key: str, result: Check) -> Check:
        return result if await self._redis.delete(key) else Check(Outcome.RACED)
