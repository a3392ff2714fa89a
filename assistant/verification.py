"""Phone verification codes in Redis, and the limits that keep them from being guessed or
from sending SMS at the operator's cost.

**Codes.** One hash per user, ``assistant:phone_code:<user id>``: an HMAC-SHA256 of the code
(``code_hash``), the phone it was sent to and its expiry time; never the code. The HMAC key
is derived from the API token, which every process of the API shares and Redis never holds:
a six-digit code has only 10⁶ values, so a plain or salted hash read from Redis would be
reversed in a second, a keyed one is not. The hash binds the code to its user and phone.
An answer is hashed the same way and compared in constant time. The key outlives the code
by ``EXPIRED_GRACE_SECONDS``, so a late answer is told "expired" (and counted so) instead of
"no code requested". Deleting the key settles "verified" and "expired": of two concurrent
answers only the one whose ``DEL`` removed it is counted.

**Limits** (fixed windows, ``limits.py``), each refusal a 429 with ``Retry-After``:

- wrong answers per user, across every code of the window (a new code brings no new
  attempts): an answer takes an attempt before it is compared, so concurrent guesses cannot
  exceed them; once they are used up the pending code is discarded, and answers and new
  codes are refused until the window ends; a verified phone clears them;
- codes per phone number (SMS bombing of one number), per user (one account pumping SMS to
  many numbers) and per API client (the total the front end may have sent, whatever the
  spread of users and numbers). The client is the API token's holder: it is the identity
  the service authenticates on these routes; the peer address is the front end's or a
  proxy's, and a forwarded-for header would let the caller pick its own bucket.

Counter keys name phones and clients by a keyed digest, not in clear.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from .config import Settings
from .limits import Counters, Limit
from .redis_client import PREFIX, redis_available

CODE_KEY = PREFIX + "phone_code:"
LIMIT_KEY = PREFIX + "verification_limit:"
CODE_DIGITS = 6
EXPIRED_GRACE_SECONDS = 600.0
LIMITS = ("attempts", "phone", "user", "client")  # the scopes a refusal is counted under

# Delivers a code to a user's phone: (user id, phone, code).
CodeSender = Callable[[int, str, str], Awaitable[None]]


class Outcome(enum.Enum):
    VERIFIED = "verified"
    FAILED = "failed"  # wrong code, attempts left
    EXHAUSTED = "exhausted"  # wrong code, no attempts left: the code is discarded
    EXPIRED = "expired"
    NOT_REQUESTED = "not_requested"  # no code pending (never sent, or long expired)
    RACED = "raced"  # a concurrent answer settled it first
    LIMITED = "limited"  # the user's attempts are used up for now: not compared


@dataclass(frozen=True)
class Check:
    outcome: Outcome
    phone: str | None = None
    attempts_left: int = 0
    retry_after: int = 0  # seconds until answers are taken again (LIMITED, EXHAUSTED)


class Limited(Exception):
    """A code was refused: ``limit`` (one of LIMITS) is reached for ``retry_after`` seconds."""

    def __init__(self, limit: str, retry_after: int) -> None:
        super().__init__(f"the {limit} limit is reached for {retry_after} s")
        self.limit = limit
        self.retry_after = retry_after


class PhoneVerifications:
    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self.ttl_seconds = settings.verification_code_ttl_seconds
        self.max_attempts = settings.verification_max_attempts
        self._key = hmac.digest(settings.api_token.encode(), b"phone verification", "sha256")
        self._client = self._digest("client", settings.api_token)
        self._counters = Counters(redis)

    def _digest(self, purpose: str, value: str) -> str:
        return hmac.new(self._key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    def _code_hash(self, user_id: int, phone: str, code: str) -> str:
        return self._digest("code", f"{user_id}:{phone}:{code}")

    def _attempts(self, user_id: int, count: bool) -> Limit:
        window = self._settings.verification_attempt_window_seconds
        key = f"{LIMIT_KEY}attempts:{user_id}"
        return Limit("attempts", key, self.max_attempts, window, count)

    async def issue(self, user_id: int, phone: str) -> str:
        """Store a new code for ``user_id`` (replacing a pending one) and return it; raise
        ``Limited`` when the user's attempts are used up or a limit on codes is reached."""
        s = self._settings
        taken = await self._counters.take(
            self._attempts(user_id, count=False),
            Limit("phone", f"{LIMIT_KEY}phone:{self._digest('phone', phone)}",
                  s.verification_phone_limit, s.verification_phone_window_seconds),
            Limit("user", f"{LIMIT_KEY}user:{user_id}",
                  s.verification_user_limit, s.verification_user_window_seconds),
            Limit("client", f"{LIMIT_KEY}client:{self._client}",
                  s.verification_client_limit, s.verification_client_window_seconds),
        )  # fmt: skip
        if taken.refused is not None:
            raise Limited(taken.refused.scope, taken.retry_after)
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        record = {
            "code_hash": self._code_hash(user_id, phone, code),
            "phone": phone,
            "expires_at": time.time() + self.ttl_seconds,
        }
        key = CODE_KEY + str(user_id)
        with redis_available():
            async with self._redis.pipeline(transaction=True) as tx:
                tx.delete(key)
                tx.hset(key, mapping=record)
                tx.pexpire(key, int((self.ttl_seconds + EXPIRED_GRACE_SECONDS) * 1000))
                await tx.execute()
        return code

    async def check(self, user_id: int, code: str) -> Check:
        """Compare ``code`` with the pending one, spending one of the user's attempts; a
        settled code is removed."""
        key = CODE_KEY + str(user_id)
        with redis_available():
            record = await self._redis.hgetall(key)
        if not record:
            taken = await self._counters.take(self._attempts(user_id, count=False))
            if taken.refused:  # the attempts ran out and took the code with them
                return Check(Outcome.LIMITED, retry_after=taken.retry_after)
            return Check(Outcome.NOT_REQUESTED)
        if time.time() >= float(record["expires_at"]):
            return await self._settle(key, Check(Outcome.EXPIRED))
        taken = await self._counters.take(self._attempts(user_id, count=True))
        if taken.refused:
            return Check(Outcome.LIMITED, retry_after=taken.retry_after)
        expected = record.get("code_hash", "")
        if hmac.compare_digest(self._code_hash(user_id, record["phone"], code), expected):
            return Check(Outcome.VERIFIED, phone=record["phone"])
        left = max(self.max_attempts - taken.counts[0], 0)
        if left == 0:
            with redis_available():
                await self._redis.delete(key)
                wait = await self._redis.pttl(self._attempts(user_id, count=False).key)
            return Check(Outcome.EXHAUSTED, retry_after=max(1, -(-wait // 1000)))
        return Check(Outcome.FAILED, attempts_left=left)

    async def consume(self, user_id: int) -> bool:
        """Remove the verified code and clear the user's wrong attempts; False when a
        concurrent answer removed the code first."""
        with redis_available():
            async with self._redis.pipeline(transaction=True) as tx:
                tx.delete(CODE_KEY + str(user_id))
                tx.delete(self._attempts(user_id, count=False).key)
                removed, _ = await tx.execute()
        return bool(removed)

    async def _settle(self, key: str, result: Check) -> Check:
        with redis_available():
            removed = await self._redis.delete(key)
        return result if removed else Check(Outcome.RACED)
