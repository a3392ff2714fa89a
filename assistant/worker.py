"""The delivery loops: one asyncio task per queue, started and stopped by the app's lifespan.

Each loop heartbeats (recovering what dead consumers held), takes one entry, hands it to
its handler and acknowledges it once the handler has recorded the outcome. While a handler
runs, the loop keeps heartbeating (every ``dead_after / 3``) and limits it to
``2/3 × dead_after`` (the settings check that the work fits): a slow handler never looks
dead, so no other consumer takes its entry as well. An entry the handler cannot parse
(``BadEntry``) goes to the dead-letter list, logged once and counted (``on_dead_letter``);
after another handler error the entry goes back to the queue's tail and the loop waits
(0.1 s doubling to 2 s). When Redis cannot be reached it gives back what it holds as soon
as Redis answers again, waits with a growing backoff (0.1 s to 2 s) and resumes by itself.
``stop()`` lets a handler finish within ``stop_timeout`` seconds, then cancels it; the entry
goes back to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import ConstantBackoff

from .config import Settings
from .queue import QUEUE_KEY, BadEntry, Consumer

log = logging.getLogger("assistant")

Handler = Callable[[str], Awaitable[None]]
OnDeadLetter = Callable[[], None]  # counts one entry dead-lettered by the loop
UNAVAILABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
BACKOFF_MIN, BACKOFF_MAX = 0.1, 2.0
HANDLER_SHARE = 2 / 3  # of dead_after: a handler's time limit
ORPHANS_SCANNED = 1000  # keys looked at for task queues no longer configured


class HandlerTimeout(Exception):
    pass


def create_worker_redis(settings: Settings) -> aioredis.Redis:
    """A client for the loops: its read timeout outlasts a blocking take, and it never
    retries by itself: a retried take whose first reply was lost would leave an entry in
    this consumer's processing list; the loop backs off and gives entries back instead."""
    return aioredis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_connect_timeout=settings.redis_timeout_seconds,
        socket_timeout=settings.queue_block_seconds + settings.redis_timeout_seconds,
        retry=Retry(ConstantBackoff(0.05), 0),
        client_name="assistant-worker",
    )


class Loop:
    def __init__(
        self,
        consumer: Consumer,
        handle: Handler,
        block_seconds: float,
        on_dead_letter: OnDeadLetter = lambda: None,
    ) -> None:
        self.consumer = consumer
        self.handle = handle
        self.on_dead_letter = on_dead_letter
        self.block_seconds = block_seconds
        self.name = consumer.queue.name
        self.stopping = asyncio.Event()
        self.running = asyncio.Event()  # cleared: paused
        self.running.set()
        self.parked = asyncio.Event()  # set while paused and idle
        self.busy = False  # inside a handler
        self.time_limit = consumer.dead_after * HANDLER_SHARE

    async def run(self) -> None:
        backoff = retry = BACKOFF_MIN  # Redis unavailable; a handler failed
        give_back = True  # at start: nothing is held, but a restart may reuse nothing
        while not self.stopping.is_set():
            if not self.running.is_set():
                self.parked.set()
                await _first(self.running.wait(), self.stopping.wait())
                self.parked.clear()
                continue
            try:
                if give_back:
                    await self.consumer.requeue()
                    give_back = False
                await self.consumer.heartbeat()
                entry = await self.consumer.take(self.block_seconds)
                if entry is None:
                    continue
                try:
                    await self._deliver(entry)
                except BadEntry as exc:
                    log.error("queue %s: dead-lettered entry (%s): %.200r", self.name, exc, entry)
                    await self.consumer.dead_letter(entry)
                    self.on_dead_letter()
                    continue
                except UNAVAILABLE:
                    raise
                except Exception:
                    log.exception("queue %s: handler failed; retry in %.1f s", self.name, retry)
                    await self.consumer.give_back(entry)  # to the tail: others go first
                    await _first(asyncio.sleep(retry), self.stopping.wait())
                    retry = min(retry * 2, BACKOFF_MAX)
                    continue
                await self.consumer.ack(entry)
                if backoff > BACKOFF_MIN:
                    log.info("queue %s: Redis is back, delivering again", self.name)
                backoff = retry = BACKOFF_MIN
            except UNAVAILABLE as exc:
                if backoff == BACKOFF_MIN:
                    log.warning("queue %s: Redis unavailable (%s); retrying", self.name, exc)
                give_back = True
                await _first(asyncio.sleep(backoff), self.stopping.wait())
                backoff = min(backoff * 2, BACKOFF_MAX)
            except Exception:
                log.exception("queue %s: failed; what is held is given back", self.name)
                give_back = True
                await _first(asyncio.sleep(backoff), self.stopping.wait())

    async def _deliver(self, entry: str) -> None:
        """The handler, heartbeating while it runs, within ``time_limit``."""
        beat = asyncio.create_task(self._beat())
        self.busy = True
        try:
            async with asyncio.timeout(self.time_limit) as limit:
                await self.handle(entry)
        except TimeoutError:
            if limit.expired():
                raise HandlerTimeout(f"handler took longer than {self.time_limit:.2f} s") from None
            raise
        finally:
            self.busy = False
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.consumer.dead_after / 3)
            with contextlib.suppress(*UNAVAILABLE):
                await self.consumer.heartbeat()


async def _first(*waits: Awaitable[object]) -> None:
    """Wait until the first of ``waits`` is done; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Worker:
    """The loops of one app process, with pause/resume (tests, maintenance) and a bounded stop."""

    def __init__(self, loops: Sequence[Loop], redis: aioredis.Redis, stop_timeout: float) -> None:
        self.loops = {loop.name: loop for loop in loops}
        self.redis = redis
        self.stop_timeout = stop_timeout
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(loop.run(), name=f"queue-{loop.name}")
            for loop in self.loops.values()
        ]
        self._tasks.append(asyncio.create_task(self._warn_unconsumed(), name="queue-orphans"))

    async def _warn_unconsumed(self) -> None:
        """Log task queues that still hold entries but are no longer configured."""
        consumed = {loop.consumer.queue.key for loop in self.loops.values()}
        prefix = QUEUE_KEY + "tasks:"
        try:
            scanned = 0
            async for key in self.redis.scan_iter(match=prefix + "*", count=100, _type="list"):
                scanned += 1
                if key not in consumed and ":" not in key[len(prefix) :]:
                    length = await self.redis.llen(key)
                    log.warning("queue %s is not configured; %d entries wait in it", key, length)
                if scanned >= ORPHANS_SCANNED:
                    break
        except UNAVAILABLE as exc:
            log.warning("could not look for unconfigured task queues (%s)", exc)

    async def pause(self, *names: str, timeout: float = 15.0) -> None:
        """Stop taking entries from the named queues (all by default); returns once idle."""
        loops = [self.loops[n] for n in names] if names else list(self.loops.values())
        for loop in loops:
            loop.running.clear()
        async with asyncio.timeout(timeout):
            await asyncio.gather(*(loop.parked.wait() for loop in loops))

    def resume(self, *names: str) -> None:
        for name in names or self.loops:
            self.loops[name].running.set()

    async def stop(self) -> None:
        """Bounded: idle loops end within a block period, a handler gets ``stop_timeout``."""
        for loop in self.loops.values():
            loop.stopping.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=self.stop_timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for loop in self.loops.values():
            with contextlib.suppress(*UNAVAILABLE):  # Redis down: dead-consumer recovery
                async with asyncio.timeout(2.0):
                    await loop.consumer.leave()
        await self.redis.aclose()
