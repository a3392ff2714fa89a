"""SMS through simulated providers, queued in Redis and delivered by the worker.

Accepting a message (``enqueue``) is one MULTI transaction: its record
``assistant:sms:<id>`` (status ``queued``), the queue entry and the user's ``accepted``
count. Either all are stored or the caller gets a 503; a 202 always means stored.

Delivery (``deliver``, run by the worker) routes by **failover**: the providers in their
configured order, the next one when one fails. When every provider failed, or the entry
was already taken ``queue_max_deliveries`` times (consumers died with it, or it ran out of
time), the message is recorded as ``failed``. Settling is idempotent (``Records.settle``):
only the delivery that settles a message records its provider calls in
``sms_messages_total{status,provider}`` and ``sms_processing_duration_seconds{provider}``
and the cost of a delivered message in ``sms_cost_total{provider}``, so a message delivered
twice is counted once. A message failed for ``retries_exhausted`` made no call of its own:
it counts as one ``failure`` of the provider tried last (the record's ``trying``), or of
the first provider, without cost or duration, and in ``sms_dead_letters_total``. Per-user
counts (``accepted``, ``delivered``, ``failed``) live in the hash ``assistant:sms_user:<id>``:
an API route reads them, and no user id ever becomes a metric label. In dev
(``keep_delivered``), a delivered message is also kept in the simulated outbox of its number
(``outbox.py``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from dataclasses import dataclass
from time import perf_counter

import redis.asyncio as aioredis

import app_metrics

from . import outbox
from .config import Profile
from .queue import Records, ReliableQueue, parse_entry, stamped
from .redis_client import PREFIX, redis_available

log = logging.getLogger("assistant")

SMS_QUEUE = "sms"
RECORD_KEY = PREFIX + "sms:"
USER_KEY = PREFIX + "sms_user:"
RECORD_TTL_SECONDS = 7 * 24 * 3600
FINAL = ("delivered", "failed")


class ProviderError(Exception):
    pass


@dataclass(frozen=True)
class Provider:
    """A simulated provider: it takes ``latency`` seconds (±50 %), fails with probability
    ``failure`` and bills ``cost`` per delivered message."""

    profile: Profile

    @property
    def name(self) -> str:
        return self.profile.name

    async def send(self, to: str, body: str) -> None:
        await asyncio.sleep(self.profile.latency * random.uniform(0.5, 1.5))
        if random.random() < self.profile.failure:
            raise ProviderError(f"{self.name} rejected the message")


def verification_text(code: str) -> str:
    return f"Your verification code is {code}"


class SmsService:
    def __init__(
        self,
        redis: aioredis.Redis,
        providers: tuple[Profile, ...],
        metrics: app_metrics.Metrics,
        max_deliveries: int,
        keep_delivered: bool = False,
    ) -> None:
        self.redis = redis
        # dev only: delivered messages go to the simulated outbox, for the traffic generator
        self.keep_delivered = keep_delivered
        self.queue = ReliableQueue(redis, SMS_QUEUE)
        self.records = Records(redis)
        self.providers = tuple(Provider(p) for p in providers)
        self.metrics = metrics
        self.max_deliveries = max_deliveries

    async def enqueue(self, to: str, body: str, user_id: int | None = None) -> str:
        """Store a message for delivery; returns its id (503 when Redis is unavailable)."""
        sms_id = uuid.uuid4().hex
        entry = stamped({"id": sms_id, "to": to, "body": body, "user_id": user_id})
        record = {"status": "queued", "user_id": user_id or "", "accepted_at": time.time()}
        user_key = None if user_id is None else USER_KEY + str(user_id)
        with redis_available():
            await self.queue.put(entry, RECORD_KEY + sms_id, record, RECORD_TTL_SECONDS, user_key)
        return sms_id

    async def send_code(self, user_id: int, phone: str, code: str) -> None:
        """The phone-verification ``CodeSender``: the code goes out as an SMS of the user's."""
        await self.enqueue(phone, verification_text(code), user_id)

    async def status(self, sms_id: str) -> dict[str, str] | None:
        with redis_available():
            record = await self.redis.hgetall(RECORD_KEY + sms_id)
        return record or None

    async def user_counts(self, user_id: int) -> dict[str, int]:
        with redis_available():
            counts = await self.redis.hgetall(USER_KEY + str(user_id))
        return {k: int(counts.get(k, 0)) for k in ("accepted", "delivered", "failed")}

    async def deliver(self, entry: str) -> None:
        """The worker's handler for one queue entry."""
        message = parse_entry(entry, id=str, to=str, body=str)
        key = RECORD_KEY + message["id"]
        taken = await self.records.taken(key, "trying")
        if taken is None:
            log.warning("SMS %s: its record expired; dropped, outcome unknown", message["id"])
            return
        deliveries, (status, trying) = taken
        if status in FINAL:
            return  # settled before a crash lost the acknowledgement
        if deliveries > self.max_deliveries:
            log.warning("SMS %s: taken %d times, recorded as failed", message["id"], deliveries)
            if await self._settle(message, "failed", error="retries_exhausted"):
                self.metrics.sms.message(trying or self.providers[0].name, "failure")
                self.metrics.sms.dead_letter("retries_exhausted")
            return
        calls: list[tuple[Provider, float, bool]] = []  # recorded once settled
        for provider in self.providers:
            await self.redis.hset(key, "trying", provider.name)
            start = perf_counter()
            try:
                await provider.send(message["to"], message["body"])
            except ProviderError:
                calls.append((provider, perf_counter() - start, False))
                continue
            calls.append((provider, perf_counter() - start, True))
            break
        tried = [provider.name for provider, _, _ in calls]
        if calls[-1][2]:
            settled = await self._settle(message, "delivered", provider=tried[-1], tried=tried)
            if settled and self.keep_delivered:
                await outbox.keep(self.redis, message["to"], message["id"], message["body"])
        else:
            settled = await self._settle(
                message, "failed", error="all_providers_failed", tried=tried
            )
        for provider, seconds, ok in calls if settled else ():
            self.metrics.sms.message(
                provider.name,
                "success" if ok else "failure",
                cost=provider.profile.cost if ok else 0.0,
                duration_seconds=seconds,
            )

    async def _settle(
        self,
        message: dict[str, object],
        status: str,
        *,
        provider: str = "",
        error: str = "",
        tried: list[str] | None = None,
    ) -> bool:
        """Record the outcome unless already recorded: True when this call recorded it."""
        record = {
            "status": status,
            "provider": provider,
            "error": error,
            "tried": ",".join(tried or []),
            "settled_at": time.time(),
        }
        user_id = message.get("user_id")
        counts = None if user_id is None else USER_KEY + str(user_id)
        return await self.records.settle(RECORD_KEY + str(message["id"]), record, counts, status)
