"""The event-loop monitor: lag per heartbeat, the stall of a loop blocked right now (read from
outside it), its start and stop with the server's lifespan, and no thread left behind."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from app_metrics.eventloop import LAG, STALL, EventLoopMonitor
from app_metrics.factory import MetricFactory

from .driver import call, isolated, scrape, value

WATCHER = "app_metrics-loop-watcher"


def watchers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == WATCHER]


def wait_for(condition: Any, timeout: float = 5.0) -> bool:
    """Poll ``condition()`` every 10 ms until it holds (at most ``timeout`` s, 1,000 polls)."""
    deadline = time.monotonic() + timeout
    for _ in range(1000):
        if condition():
            return True
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    return bool(condition())


@pytest.fixture
def monitored() -> Iterator[tuple[EventLoopMonitor, CollectorRegistry]]:
    registry = CollectorRegistry()
    monitor = EventLoopMonitor(MetricFactory(registry, {"service": "s"}), interval=0.02)
    yield monitor, registry
    monitor.stop()


def test_a_blocked_loop_shows_in_the_stall_gauge_while_it_is_still_blocked(
    monitored: tuple[EventLoopMonitor, CollectorRegistry],
) -> None:
    monitor, registry = monitored
    release = threading.Event()
    seen_while_blocked: list[float] = []

    def stall() -> float:
        return registry.get_sample_value(STALL, {"service": "s"}) or 0.0

    def observer() -> None:  # another thread: the loop runs nothing meanwhile
        if wait_for(lambda: stall() > 0):
            seen_while_blocked.append(stall())
        release.set()

    async def main() -> None:
        monitor.start()
        await asyncio.sleep(0.1)  # a few beats
        threading.Thread(target=observer).start()
        release.wait(10)  # blocks the loop until the observer has seen the stall

    asyncio.run(main())
    assert seen_while_blocked and seen_while_blocked[0] > 0
    assert wait_for(lambda: not watchers())  # the loop closed: the watcher went with it


def test_each_beat_observes_its_lag_and_a_block_lands_in_the_histogram_once_it_ends(
    monitored: tuple[EventLoopMonitor, CollectorRegistry],
) -> None:
    monitor, registry = monitored
    block = 0.3

    async def main() -> None:
        monitor.start()
        await asyncio.sleep(0.1)
        time.sleep(block)
        await asyncio.sleep(0.1)

    asyncio.run(main())
    labels = {"service": "s"}
    assert (registry.get_sample_value(f"{LAG}_count", labels) or 0) >= 3
    # the beat due during the block ran at least block - interval late
    assert (registry.get_sample_value(f"{LAG}_sum", labels) or 0) >= block - monitor.interval
    assert registry.get_sample_value(f"{LAG}_bucket", {**labels, "le": "+Inf"}) == (
        registry.get_sample_value(f"{LAG}_count", labels)
    )


def test_stop_joins_the_watcher_and_resets_the_gauge(
    monitored: tuple[EventLoopMonitor, CollectorRegistry],
) -> None:
    monitor, registry = monitored
    before = len(watchers())

    async def main() -> None:
        monitor.start()
        monitor.start()  # again on the same loop: still one watcher
        assert monitor.running and len(watchers()) == before + 1
        time.sleep(0.1)
        assert monitor.stall() > 0
        monitor.stop()
        assert not monitor.running and len(watchers()) == before
        assert registry.get_sample_value(STALL, {"service": "s"}) == 0.0

    asyncio.run(main())


def test_a_new_loop_moves_the_monitor_to_it(
    monitored: tuple[EventLoopMonitor, CollectorRegistry],
) -> None:
    monitor, _ = monitored
    loops = []

    async def main() -> None:
        monitor.start()
        loops.append(monitor.loop)
        await asyncio.sleep(0.05)

    asyncio.run(main())
    asyncio.run(main())
    assert loops[0] is not loops[1]
    assert wait_for(lambda: not watchers())


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval must be > 0"):
        EventLoopMonitor(MetricFactory(CollectorRegistry(), {}), interval=0)


# --- through instrument(): started with the server, stopped with it ------------------------


async def lifespan(app: Any, events: list[str], during: Any = None) -> None:
    """Drive an ASGI lifespan: startup, ``during()`` (awaited), shutdown."""
    incoming: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    await incoming.put({"type": "lifespan.startup"})

    async def receive() -> dict[str, str]:
        return await incoming.get()

    async def send(message: dict[str, str]) -> None:
        events.append(message["type"])
        if message["type"] == "lifespan.startup.complete":
            if during is not None:
                await during()
            await incoming.put({"type": "lifespan.shutdown"})

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)


def test_instrument_starts_the_monitor_at_lifespan_startup_and_stops_it_at_shutdown() -> None:
    app = FastAPI()
    metrics = isolated(app)
    events: list[str] = []
    running: list[bool] = []

    async def during() -> None:
        running.append(metrics.event_loop.running)

    asyncio.run(lifespan(app, events, during))
    assert events == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert running == [True]
    assert not metrics.event_loop.running


def test_without_a_lifespan_the_first_request_starts_it_and_the_families_are_exposed() -> None:
    app = FastAPI()
    metrics = isolated(app, const_labels={"service": "s"})
    assert not metrics.event_loop.running
    text = scrape(app)  # the first request
    assert value(text, STALL, service="s") == 0.0
    assert value(text, f"{LAG}_bucket", service="s", le="+Inf") is not None
    assert wait_for(lambda: not metrics.event_loop.running)  # asyncio.run closed its loop
    assert call(app, "/metrics").status == 200  # and a new loop starts it again
