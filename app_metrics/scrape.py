"""Scrape-time gauges: values read from their sources when Prometheus scrapes.

A source is a sync or async callable that returns the current values of one or
more gauges. Sources run before each render, concurrently, each under its own
timeout, and their results are cached for ``ttl`` seconds, so a hung dependency
costs at most one timeout per ``ttl`` and never fails the scrape: its series
are left out and the failure is counted.

Every reader call goes through ``ScrapeTimeValues.call``: async readers run on
the event loop, sync ones on a small thread pool of this module's own (never
asyncio's default executor, which the application needs). A thread cannot be
cancelled, so a sync reader still running after its timeout is not called again
until it returns: meanwhile its source counts as timed out.

A scrape answered outside the event loop (the metrics listener's threads) asks the loop for a
refresh and waits a bounded time (``refresh_from``); a loop too busy or blocked to run it in
time cannot time its sources out either, so the waiting side does: what the loop has not
refreshed is served from the cache, until a source has waited its own timeout, after which it
is left out and counted as timed out, as the loop would have done.

The values live in this process and are served by a collector, not by
prometheus_client gauges, so they also work in multiprocess mode, where
prometheus_client would drop custom collectors (the worker that answers the
scrape adds this collector to its exposition registry).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from time import monotonic
from typing import Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from .labels import LabelGuard

log = logging.getLogger("app_metrics")

# What a source returns: {gauge name: value} for unlabelled gauges, or
# {gauge name: {label value or tuple of label values: value}} for labelled ones.
Values = Mapping[str, float | Mapping[Any, float]]
SourceFn = Callable[[], Values | Awaitable[Values]]

_THREADS = 4  # sync readers running at once; each stuck one holds a thread until it returns


@dataclass(frozen=True)
class SourceOptions:
    """Default timeout and cache lifetime (seconds) of scrape-time sources."""

    timeout: float = 2.0
    ttl: float = 5.0


class SourceBusy(TimeoutError):
    """A sync reader's previous call is still running; it is not called again."""


@dataclass
class _Gauge:
    name: str
    doc: str
    labelnames: tuple[str, ...]
    guard: LabelGuard


@dataclass
class _Source:
    name: str
    fn: SourceFn
    gauges: tuple[str, ...]
    timeout: float
    ttl: float
    values: dict[str, dict[tuple[str, ...], float]] = field(default_factory=dict)
    fetched_at: float = float("-inf")
    running_since: float | None = None  # the run under way (a run timed out from outside ends it)


# why a source's values were left out of a scrape (the ``reason`` label of its errors)
ERROR_REASONS = ("error", "timeout")


class ScrapeTimeValues:
    """Registry of scrape-time gauges and their sources; a prometheus_client collector.
    ``on_error(source, reason)`` is called for each failure, ``on_source(name)`` once for
    each source registered (to expose its error counts at 0 before the first one)."""

    def __init__(
        self,
        const_labels: Mapping[str, str],
        label_cap: int,
        on_reject: Callable[[str, str, str], None],
        on_error: Callable[[str, str], None],
        on_source: Callable[[str], None] = lambda name: None,
    ) -> None:
        self._const_names = tuple(const_labels)
        self._const_values = tuple(const_labels.values())
        self._label_cap = label_cap
        self._on_reject = on_reject
        self._on_error = on_error
        self._on_source = on_source
        self._gauges: dict[str, _Gauge] = {}
        self._sources: dict[str, _Source] = {}
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0
        self._busy: set[str] = set()  # sources whose sync reader is running
        self._busy_lock = threading.Lock()  # also guards a source's run against refresh_from
        self._pending: concurrent.futures.Future[None] | None = None  # refresh_from's refresh
        self._pending_since = 0.0

    def gauge(self, name: str, doc: str, labelnames: Sequence[str] = ()) -> None:
        """Declare a scrape-time gauge (idempotent for the same definition)."""
        known = self._gauges.get(name)
        if known is not None:
            if known.labelnames != tuple(labelnames):
                raise ValueError(f"gauge {name} already declared with labels {known.labelnames}")
            return
        guard = LabelGuard(name, labelnames, self._label_cap, self._on_reject)
        self._gauges[name] = _Gauge(name, doc, tuple(labelnames), guard)

    def source(
        self,
        name: str,
        fn: SourceFn,
        gauges: Sequence[str],
        *,
        timeout: float = 2.0,
        ttl: float = 5.0,
    ) -> None:
        """Register ``fn`` as the source of ``gauges``; it replaces a source of the same name."""
        unknown = [g for g in gauges if g not in self._gauges]
        if unknown:
            raise ValueError(f"source {name}: undeclared gauges {unknown}")
        if timeout <= 0 or ttl < 0:
            raise ValueError(f"source {name}: timeout must be > 0 and ttl >= 0")
        self._sources[name] = _Source(name, fn, tuple(gauges), timeout, ttl)
        self._on_source(name)

    def ask(self, loop: asyncio.AbstractEventLoop | None) -> concurrent.futures.Future[None] | None:
        """Have ``loop`` refresh, from another thread, unless a refresh is under way; the
        refresh under way or asked for (None: no loop)."""
        with self._busy_lock:
            pending = self._pending
            if (pending is None or pending.done()) and loop is not None and not loop.is_closed():
                pending = self._pending = asyncio.run_coroutine_threadsafe(self.refresh(), loop)
                self._pending_since = monotonic()
            return pending

    async def refresh(self) -> None:
        """Run every source whose cached values are older than its ttl."""
        async with self._loop_lock():
            now = monotonic()
            due = [s for s in self._sources.values() if now - s.fetched_at >= s.ttl]
            if due:
                await asyncio.gather(*(self._run(s) for s in due))

    def refresh_from(
        self, loop: asyncio.AbstractEventLoop | None, wait: float, ask: bool = True
    ) -> None:
        """From a thread other than ``loop``'s: have ``loop`` refresh (one refresh at a time;
        ``ask`` False: only the one already asked for) and wait for it at most ``wait``
        seconds; then time out, as the loop would have, each due source that has waited for
        the loop or run for longer than its timeout."""
        pending = self.ask(loop) if ask else self._pending
        if pending is None:
            return  # no loop yet: the cache as it is
        try:
            pending.result(wait)
            return
        except concurrent.futures.TimeoutError:
            pass
        except Exception:
            log.exception("scrape-time refresh failed")
        now = monotonic()
        for source in list(self._sources.values()):
            with self._busy_lock:
                # running, or waiting since it was asked for and due, whichever came last
                started = source.running_since or max(
                    self._pending_since, source.fetched_at + source.ttl
                )
                if now - source.fetched_at < source.ttl or now - started < source.timeout:
                    continue
                self._timed_out(source, f"the event loop did not run it for {now - started:.1f}s")

    def update(self, name: str, result: Values) -> None:
        """Set source ``name``'s values from a run made outside a scrape (fresh for its ttl)."""
        source = self._sources[name]
        source.values = self._normalise(source, result)
        source.fetched_at = monotonic()

    async def call(self, key: str, fn: Callable[[], Any]) -> Any:
        """Call the reader of source ``key``: an async one on the loop, a sync one on our pool.

        Raises ``SourceBusy`` (a ``TimeoutError``) while the previous sync call of ``key``
        is still running, so a hung reader holds one thread, not one per scrape.
        """
        if inspect.iscoroutinefunction(fn):
            return await fn()
        with self._busy_lock:
            pool = self._thread_pool()
            if key in self._busy:
                raise SourceBusy("its previous call is still running")
            self._busy.add(key)
        try:
            future = pool.submit(contextvars.copy_context().run, fn)
        except BaseException:
            self._done(key)
            raise
        # runs when the call returns, or at once when it is cancelled before it started
        future.add_done_callback(lambda _: self._done(key))
        result = await asyncio.wrap_future(future)
        if inspect.isawaitable(result):
            return await result
        return result

    def _done(self, key: str) -> None:
        with self._busy_lock:
            self._busy.discard(key)

    def _thread_pool(self) -> ThreadPoolExecutor:
        # created lazily, and again in a forked child (the parent's threads are not there)
        if self._pool is None or self._pool_pid != os.getpid():
            self._pool = ThreadPoolExecutor(_THREADS, thread_name_prefix="app_metrics-source")
            self._pool_pid = os.getpid()
            self._busy.clear()
        return self._pool

    async def _run(self, source: _Source) -> None:
        started = source.running_since = monotonic()
        try:
            result = await asyncio.wait_for(self.call(source.name, source.fn), source.timeout)
            values = self._normalise(source, result)
        except TimeoutError as exc:
            with self._busy_lock:
                if source.running_since == started:
                    self._timed_out(source, str(exc) or f"timed out after {source.timeout:g}s")
            return
        except Exception:
            with self._busy_lock:
                if source.running_since == started:
                    log.exception("scrape-time source %s failed", source.name)
                    self._ended(source, {}, ERROR_REASONS[0])
            return
        with self._busy_lock:
            if source.running_since == started:  # else timed out from outside meanwhile
                self._ended(source, values)

    def _timed_out(self, source: _Source, reason: str) -> None:
        log.warning("scrape-time source %s: %s", source.name, reason)
        self._ended(source, {}, ERROR_REASONS[1])

    def _ended(
        self, source: _Source, values: dict[str, dict[tuple[str, ...], float]], error: str = ""
    ) -> None:
        source.values, source.fetched_at, source.running_since = values, monotonic(), None
        if error:
            self._on_error(source.name, error)

    def _normalise(
        self, source: _Source, result: Values
    ) -> dict[str, dict[tuple[str, ...], float]]:
        out: dict[str, dict[tuple[str, ...], float]] = {}
        for name, value in result.items():
            if name not in source.gauges:
                raise ValueError(f"source {source.name} returned undeclared gauge {name}")
            gauge = self._gauges[name]
            if isinstance(value, Mapping):
                series: dict[tuple[str, ...], float] = {}
                for key, v in value.items():
                    raw = key if isinstance(key, tuple) else (key,)
                    labels = gauge.guard.clean(raw)
                    # values the guard collapses (<overflow>, <redacted>) add up
                    series[labels] = series.get(labels, 0.0) + float(v)
                out[name] = series
            else:
                if gauge.labelnames:
                    raise ValueError(
                        f"gauge {name} has labels {gauge.labelnames}: return a mapping"
                    )
                out[name] = {(): float(value)}
        return out

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, dict[tuple[str, ...], float]] = {name: {} for name in self._gauges}
        for source in list(self._sources.values()):
            for name, series in source.values.items():
                merged[name].update(series)
        for name, gauge in self._gauges.items():
            family = GaugeMetricFamily(name, gauge.doc, labels=gauge.labelnames + self._const_names)
            for labels, value in merged[name].items():
                family.add_metric([*labels, *self._const_values], value)
            yield family

    def _loop_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock
