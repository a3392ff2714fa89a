"""A reliable Redis queue, shared by SMS and background tasks.

Keys of the queue ``<name>``:

* ``assistant:queue:<name>``: the waiting entries; producers ``LPUSH``, consumers take
  from the right (FIFO). Its ``LLEN`` is the queue length the metrics report.
* ``assistant:queue:<name>:processing:<consumer>``: what one consumer has taken and not
  yet acknowledged. ``BLMOVE`` moves an entry there atomically, so an entry is always in
  one of the two lists; ``LREM`` acknowledges it once its outcome is recorded.
* ``assistant:queue:<name>:consumers``: a sorted set of consumer ids scored by their last
  heartbeat. A consumer whose heartbeat is older than ``dead_after`` seconds is dead:
  any consumer moves its processing list back to the queue (one Lua script, atomic) and
  forgets it. A crash therefore delays an entry, it never loses it.

Delivery is at least once: an entry taken by a consumer that dies after doing the work
but before recording it runs again; handlers record a final outcome per entry id and skip
an entry whose outcome is already recorded (``Records``). An entry that cannot be parsed
(``BadEntry``) goes to the dead-letter list ``assistant:queue:<name>:dead`` (the newest
``DEAD_LETTERS_KEPT``).

Each entry is a JSON object whose ``queued_at`` field (Unix seconds, ``stamped``) says when
it was queued: ``oldest_age`` reads it from the entry taken next, so a stuck consumer shows
as an age that grows while the length may stay small. An entry given back after a handler
error goes to the tail and is not the one read until it comes round again.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import redis.asyncio as aioredis

from .redis_client import PREFIX

QUEUE_KEY = PREFIX + "queue:"
DEAD_LETTERS_KEPT = 1000
QUEUED_AT = "queued_at"  # the entry's field: when it was queued (Unix seconds)

# KEYS[1] consumers, KEYS[2] queue; ARGV[1] heartbeat cutoff, ARGV[2] processing key prefix.
# The processing keys are derived inside the script: fine on one Redis, not on a cluster.
_RECOVER = """
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local moved = 0
for _, consumer in ipairs(dead) do
  local key = ARGV[2] .. consumer
  while redis.call('LMOVE', key, KEYS[2], 'LEFT', 'RIGHT') do moved = moved + 1 end
  redis.call('ZREM', KEYS[1], consumer)
end
return moved
"""

# KEYS[1] processing, KEYS[2] queue: give back everything taken (oldest is taken next)
_REQUEUE = """
local moved = 0
while redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT') do moved = moved + 1 end
return moved
"""

# KEYS[1] processing, KEYS[2] destination; ARGV[1] entry, ARGV[2] entries kept (0: all).
# Moves one held entry to the tail of the destination (taken last); nothing when not held.
_MOVE_ONE = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[1])
if tonumber(ARGV[2]) > 0 then redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1) end
return 1
"""

# KEYS[1] record; ARGV: fields to read. Counts one more delivery unless the record is gone
# (its TTL passed: never recreated): {deliveries, field values...}, or nil.
_TAKEN = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local values = redis.call('HMGET', KEYS[1], unpack(ARGV))
table.insert(values, 1, redis.call('HINCRBY', KEYS[1], 'deliveries', 1))
return values
"""

# KEYS[1] record, KEYS[2] counts (optional); ARGV[1] count field, ARGV[2..] field, value...
# Settles a record still 'queued' (not final, not gone) and counts it: 1, else 0.
_SETTLE = """
if redis.call('HGET', KEYS[1], 'status') ~= 'queued' then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
if KEYS[2] then redis.call('HINCRBY', KEYS[2], ARGV[1], 1) end
return 1
"""


class BadEntry(ValueError):
    """A queue entry that cannot be parsed: it goes to the dead-letter list, never retried."""


def parse_entry(entry: str, **fields: type) -> dict[str, Any]:
    """The JSON object ``entry``, with each of ``fields`` of its type; else ``BadEntry``."""
    try:
        value = json.loads(entry)
    except ValueError:
        raise BadEntry("not JSON") from None
    if not isinstance(value, dict):
        raise BadEntry("not a JSON object")
    wrong = [name for name, kind in fields.items() if not isinstance(value.get(name), kind)]
    if wrong:
        raise BadEntry(f"missing or mistyped {', '.join(wrong)}")
    return value


def stamped(entry: dict[str, Any]) -> str:
    """``entry`` as a queue entry: JSON with ``queued_at`` set to now."""
    return json.dumps({**entry, QUEUED_AT: time.time()})


def age_of(entry: str | None, now: float) -> float:
    """Seconds since ``entry`` was queued; 0 for none, or one without a valid stamp (queued
    before entries carried one, or malformed: the loop dead-letters it)."""
    if entry is None:
        return 0.0
    try:
        queued_at = json.loads(entry).get(QUEUED_AT)
    except (ValueError, AttributeError):
        return 0.0
    if isinstance(queued_at, bool) or not isinstance(queued_at, int | float):
        return 0.0
    return max(0.0, now - queued_at)


class Records:
    """The handlers' per-entry records: hashes whose ``status`` is ``queued`` until settled."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._taken = redis.register_script(_TAKEN)
        self._settle = redis.register_script(_SETTLE)

    async def taken(self, key: str, *fields: str) -> tuple[int, list[str | None]] | None:
        """Count one more delivery: (deliveries, [status, values of ``fields``...]); None when
        the record is gone (expired), which is then left alone."""
        result = await self._taken(keys=[key], args=["status", *fields])
        return None if result is None else (int(result[0]), result[1:])

    async def settle(
        self, key: str, fields: dict[str, Any], counts: str | None = None, count: str = ""
    ) -> bool:
        """Record the final ``fields`` and add 1 to ``count`` of the hash ``counts``, only if
        the record is still ``queued``: True when this call settled it (count metrics then)."""
        args = [count, *(item for pair in fields.items() for item in pair)]
        keys = [key, counts] if counts else [key]
        return bool(await self._settle(keys=keys, args=args))


# Store a record and queue its entry, once: a client that retries after a lost reply finds
# the record and adds nothing. KEYS: record, queue[, per-user counts]; ARGV: entry, ttl,
# then the record's field/value pairs.
_PUT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('LPUSH', KEYS[2], ARGV[1])
if #KEYS == 3 then redis.call('HINCRBY', KEYS[3], 'accepted', 1) end
return 1
"""


class ReliableQueue:
    def __init__(self, redis: aioredis.Redis, name: str) -> None:
        self.redis = redis
        self.name = name
        self.key = QUEUE_KEY + name
        self.consumers_key = self.key + ":consumers"
        self.processing_prefix = self.key + ":processing:"
        self.dead_key = self.key + ":dead"
        self._move_one = redis.register_script(_MOVE_ONE)
        self._recover = redis.register_script(_RECOVER)
        self._requeue = redis.register_script(_REQUEUE)
        self._put = redis.register_script(_PUT)

    async def put(
        self,
        entry: str,
        record_key: str,
        record: dict[str, Any],
        ttl_seconds: int,
        user_counts_key: str | None = None,
    ) -> bool:
        """Store ``record`` (with a TTL) and queue ``entry`` in one step, idempotently;
        ``user_counts_key`` also counts it as the user's ``accepted``. False: already there."""
        keys = [record_key, self.key, *([user_counts_key] if user_counts_key else [])]
        fields = [str(v) for pair in record.items() for v in pair]
        return bool(await self._put(keys=keys, args=[entry, ttl_seconds, *fields]))

    async def length(self) -> int:
        """Entries waiting (not those being processed)."""
        return int(await self.redis.llen(self.key))

    async def oldest_age(self) -> float:
        """Seconds the entry taken next has waited (0 when the queue is empty)."""
        return age_of(await self.redis.lindex(self.key, -1), time.time())

    def consumer(self, redis: aioredis.Redis | None = None, dead_after: float = 30.0) -> Consumer:
        """A new consumer with a unique id; ``redis`` may be a client with a longer timeout
        for the blocking take."""
        return Consumer(ReliableQueue(redis, self.name) if redis else self, dead_after)


class Consumer:
    def __init__(self, queue: ReliableQueue, dead_after: float) -> None:
        self.queue = queue
        self.id = uuid.uuid4().hex
        self.processing = queue.processing_prefix + self.id
        self.dead_after = dead_after

    async def heartbeat(self) -> int:
        """Say this consumer is alive, and give back what dead ones had taken; returns how
        many entries were recovered."""
        q = self.queue
        now = time.time()
        await q.redis.zadd(q.consumers_key, {self.id: now})
        recovered = await q._recover(
            keys=[q.consumers_key, q.key], args=[now - self.dead_after, q.processing_prefix]
        )
        return int(recovered)

    async def take(self, block_seconds: float) -> str | None:
        """The oldest waiting entry, moved to this consumer's processing list; None when
        nothing arrived within ``block_seconds``."""
        q = self.queue
        return await q.redis.blmove(q.key, self.processing, block_seconds, "RIGHT", "LEFT")  # type: ignore[no-any-return]

    async def ack(self, entry: str) -> None:
        await self.queue.redis.lrem(self.processing, 1, entry)

    async def give_back(self, entry: str) -> None:
        """Return one held entry to the tail of the queue: the waiting ones go first."""
        q = self.queue
        await q._move_one(keys=[self.processing, q.key], args=[entry, 0])

    async def dead_letter(self, entry: str) -> None:
        """Acknowledge an entry that cannot be handled, keeping it in the dead-letter list."""
        q = self.queue
        await q._move_one(keys=[self.processing, q.dead_key], args=[entry, DEAD_LETTERS_KEPT])

    async def requeue(self) -> int:
        """Give back everything this consumer holds (after an error, or at shutdown)."""
        return int(await self.queue._requeue(keys=[self.processing, self.queue.key]))

    async def leave(self) -> None:
        """Clean shutdown: give back what is held and stop being a consumer."""
        await self.requeue()
        await self.queue.redis.zrem(self.queue.consumers_key, self.id)
