"""Fixed-window counters in Redis: how many times something happened in its window.

A counter is a plain Redis string whose TTL is its window: the first ``INCR`` of a window
sets the TTL, and the key expires with the window. ``Counters.take`` checks several
counters and adds one to each in one Lua script, so concurrent requests cannot slip past
a limit between the check and the count, and a refused request counts nowhere. Nothing
resets a counter but its TTL (a verified phone number clears its user's wrong attempts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import redis.asyncio as aioredis

from .redis_client import redis_available

# KEYS: counters; ARGV, three per key: limit, window in ms, 1 to count (0: only check).
# Refused when any counter is at its limit: {position of the first such key, the longest
# wait in ms among them}; else each counted key gets one more: {0, the counts...}.
_TAKE = """
local first, wait = 0, 0
for i, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if count >= tonumber(ARGV[3 * i - 2]) then
    local ttl = redis.call('PTTL', key)
    if ttl < 0 then
      ttl = tonumber(ARGV[3 * i - 1])
      redis.call('PEXPIRE', key, ttl)
    end
    if first == 0 then first = i end
    if ttl > wait then wait = ttl end
  end
end
if first > 0 then return {first, wait} end
local counts = {0}
for i, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if ARGV[3 * i] == '1' then
    count = redis.call('INCR', key)
    if count == 1 then redis.call('PEXPIRE', key, ARGV[3 * i - 1]) end
  end
  table.insert(counts, count)
end
return counts
"""


@dataclass(frozen=True)
class Limit:
    """At most ``limit`` in ``window_seconds``, counted in the Redis key ``key``."""

    scope: str  # what the refusal is reported as: phone, user, client, attempts
    key: str
    limit: int
    window_seconds: float
    count: bool = True  # False: the counter is checked, not added to

    @property
    def window_ms(self) -> int:
        return max(1, int(self.window_seconds * 1000))


@dataclass(frozen=True)
class Taken:
    """What ``take`` decided: ``refused`` names the first limit reached (None: allowed);
    ``retry_after`` is the seconds until every limit reached has room again; ``counts``
    the counters' values after this one (allowed only)."""

    refused: Limit | None
    retry_after: int = 0
    counts: tuple[int, ...] = ()


class Counters:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._take = redis.register_script(_TAKE)

    async def take(self, *limits: Limit) -> Taken:
        """Refuse when any of ``limits`` is reached, else count one for each (atomically)."""
        args = [v for lim in limits for v in (lim.limit, lim.window_ms, int(lim.count))]
        with redis_available():
            result = await self._take(keys=[lim.key for lim in limits], args=args)
        first, *rest = (int(value) for value in result)
        if first:
            return Taken(limits[first - 1], retry_after=max(1, math.ceil(rest[0] / 1000)))
        return Taken(None, counts=tuple(rest))
