"""The simulated providers' outbox, dev only: the SMS each phone number "received".

With ``ASSISTANT_SMS_OUTBOX=true`` (the dev stack's worker), every SMS a simulated provider
delivers is also kept under ``assistant:sms_outbox:<phone>``: the newest ``KEPT`` messages,
for ``TTL_SECONDS``. The traffic generator reads the newest one to answer a verification
code, as a person reads it off their phone; the service itself never reads it. Off by
default, so stage and prod keep no message text: a code then exists in clear only in the
SMS queue entry that carries it to the provider, and only until it is delivered.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import redis.asyncio as aioredis

from .redis_client import PREFIX

KEY = PREFIX + "sms_outbox:"
KEPT = 5
TTL_SECONDS = 600
_CODE = re.compile(r"(?<!\d)(\d{6})(?!\d)")


async def keep(redis: aioredis.Redis, phone: str, sms_id: str, body: str) -> None:
    """Put a delivered message in ``phone``'s outbox."""
    async with redis.pipeline(transaction=True) as tx:
        tx.lpush(KEY + phone, json.dumps({"id": sms_id, "body": body}))
        tx.ltrim(KEY + phone, 0, KEPT - 1)
        tx.expire(KEY + phone, TTL_SECONDS)
        await tx.execute()


async def newest(redis: aioredis.Redis, phone: str) -> dict[str, str] | None:
    """The last message ``phone`` received, ``{"id", "body"}``, or None."""
    raw = await redis.lindex(KEY + phone, 0)  # type: ignore[misc]
    return None if raw is None else json.loads(raw)  # type: ignore[no-any-return]


async def code_after(
    redis: aioredis.Redis, phone: str, before: dict[str, str] | None, timeout: float = 5.0
) -> str | None:
    """The six-digit code of the first message newer than ``before`` (``newest`` when the
    code was asked for), waiting for its delivery at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = await newest(redis, phone)
        if message is not None and message != before:
            found = _CODE.search(message["body"])
            return found.group(1) if found else None
        await asyncio.sleep(0.05)
    return None
