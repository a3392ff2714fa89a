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
an entry whose outcome is already recorded.
"""

from __future__ import annotations

import time
import uuid

import redis.asyncio as aioredis

from .redis_client import PREFIX

QUEUE_KEY = PREFIX + "queue:"

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


class ReliableQueue:
    def __init__(self, redis: aioredis.Redis, name: str) -> None:
        self.redis = redis
        self.name = name
        self.key = QUEUE_KEY + name
        self.consumers_key = self.key + ":consumers"
        self.processing_prefix = self.key + ":processing:"
        self._recover = redis.register_script(_RECOVER)
        self._requeue = redis.register_script(_REQUEUE)

    async def length(self) -> int:
        """Entries waiting (not those being processed)."""
        return int(await self.redis.llen(self.key))

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

    async def requeue(self) -> int:
        """Give back everything this consumer holds (after an error, or at shutdown)."""
        return int(await self.queue._requeue(keys=[self.processing, self.queue.key]))

    async def leave(self) -> None:
        """Clean shutdown: give back what is held and stop being a consumer."""
        await self.requeue()
        await self.queue.redis.zrem(self.queue.consumers_key, self.id)
