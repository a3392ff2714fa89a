"""Event-loop lag: a heartbeat on the running loop, and a watcher thread that reads it from outside.

The heartbeat is a timer callback on the loop (``call_later``) every ``interval`` seconds; how
late it runs is the loop's lag, observed into ``event_loop_lag_seconds``. A loop that is blocked
right now runs no callback at all, so a heartbeat alone would tell of a block only once it is
over. The watcher, a thread of its own, therefore sets ``event_loop_stall_seconds`` to how long
the next beat is overdue (0 while the loop keeps up), every ``interval`` and before each render,
and logs the loop thread's stack once per stall longer than ``LOG_AFTER``: where it is stuck.

Neither touches the request path. In multiprocess mode the histogram adds up across workers and
the gauge is the longest current stall of the live workers (``livemax``).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import traceback
from collections.abc import Callable
from time import monotonic

from .factory import MetricFactory

log = logging.getLogger("app_metrics")

LAG = "event_loop_lag_seconds"
STALL = "event_loop_stall_seconds"
INTERVAL = 0.1  # seconds between beats: ten timer callbacks a second, a few µs each
# from 1 ms (the timer's resolution) to 10 s; a 5 s block lands in le="5.0" or le="10.0"
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LOG_AFTER = 1.0  # seconds of stall before the loop thread's stack is logged (once per stall)


class EventLoopMonitor:
    """The heartbeat and its watcher, for one loop at a time (``start`` on it, ``stop``)."""

    def __init__(self, factory: MetricFactory, interval: float = INTERVAL) -> None:
        if not interval > 0:
            raise ValueError("the event-loop heartbeat interval must be > 0")
        const = tuple(factory.const_labels.values())
        lag = factory.raw_histogram(
            LAG,
            "How late the event loop ran its heartbeat, a timer due every "
            f"{interval:g} s: the time a ready callback waits for the loop.",
            (),
            LAG_BUCKETS,
        )
        stall = factory.raw_gauge(
            STALL,
            "How long the event loop's next heartbeat is overdue, read from outside the "
            "loop: a loop blocked right now (0 while it keeps up; the longest stall of the "
            "live workers in multiprocess mode).",
            (),
            mode="livemax",
        )
        self._lag = lag.labels(*const) if const else lag
        self._stall = stall.labels(*const) if const else stall
        self.interval = interval
        self.on_gone: Callable[[], None] = lambda: None  # the loop was closed without stop()
        self.lag = 0.0  # the last beat's lag, seconds
        self.loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._generation = 0  # a beat of an earlier start() sees a newer one and stops
        self._due = 0.0  # monotonic time the next beat is due
        self._handle: asyncio.TimerHandle | None = None
        self._loop_thread = 0
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    @property
    def running(self) -> bool:
        thread = self._thread
        return self.loop is not None and thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start on the running loop (from its thread); a no-op when running on it already."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self.loop is loop and self.running:
                return
            self._stop_locked()
            self._generation += 1
            self.loop, self._loop_thread = loop, threading.get_ident()
            self._stopped = threading.Event()
            self._schedule(self._generation)
            self._thread = threading.Thread(
                target=self._watch,
                args=(loop, self._stopped),
                name="app_metrics-loop-watcher",
                daemon=True,
            )
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the heartbeat and the watcher (joined, at most ``timeout`` s)."""
        with self._lock:
            thread = self._stop_locked()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def stall(self) -> float:
        """Seconds the next beat is overdue now (0 while the loop keeps up, or not started);
        also sets the gauge."""
        value = max(0.0, monotonic() - self._due) if self.loop is not None else 0.0
        self._stall.set(value)
        return value

    def _stop_locked(self) -> threading.Thread | None:
        self._generation += 1
        handle, self._handle = self._handle, None
        if handle is not None and threading.get_ident() == self._loop_thread:
            handle.cancel()  # from another thread, the generation stops the next beat
        self._stopped.set()
        self.loop = None
        self._stall.set(0.0)
        thread, self._thread = self._thread, None
        return thread

    def _schedule(self, generation: int) -> None:
        assert self.loop is not None
        self._due = monotonic() + self.interval
        self._handle = self.loop.call_later(self.interval, self._beat, generation)

    def _beat(self, generation: int) -> None:
        if generation != self._generation:
            return
        self.lag = max(0.0, monotonic() - self._due)
        self._lag.observe(self.lag)
        self._schedule(generation)

    def _watch(self, loop: asyncio.AbstractEventLoop, stopped: threading.Event) -> None:
        logged = False
        while not stopped.wait(self.interval):
            if loop.is_closed():  # a server or test that never said it stopped
                with self._lock:
                    mine = self.loop is loop
                    if mine:
                        self._stop_locked()
                if mine:
                    self.on_gone()
                return
            stall = self.stall()
            if stall >= LOG_AFTER and not logged:
                logged = True
                log.warning(
                    "the event loop has run nothing for %.1f s; its thread is at:\n%s",
                    stall + self.interval,
                    self._loop_stack(),
                )
            elif stall == 0.0:
                logged = False

    def _loop_stack(self) -> str:
        frame = sys._current_frames().get(self._loop_thread)
        return "".join(traceback.format_stack(frame, limit=8)) if frame else "(no stack)"
