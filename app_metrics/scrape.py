"""Scrape-time gauges: values read from their sources when Prometheus scrapes.

A source is a sync or async callable that returns the current values of one or
more gauges. Sources run on the event loop before each render, concurrently,
each under its own timeout, and their results are cached for ``ttl`` seconds,
so a hung dependency costs at most one timeout per ``ttl`` and never fails the
scrape: its series are left out and the failure is counted.

The values live in this process and are served by a collector, not by
prometheus_client gauges, so they also work in multiprocess mode, where
prometheus_client would drop custom collectors (the worker that answers the
scrape adds this collector to its exposition registry).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
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


class ScrapeTimeValues:
    """Registry of scrape-time gauges and their sources; a prometheus_client collector."""

    def __init__(
        self,
        const_labels: Mapping[str, str],
        label_cap: int,
        on_reject: Callable[[str, str, str], None],
        on_error: Callable[[str, str], None],
    ) -> None:
        self._const_names = tuple(const_labels)
        self._const_values = tuple(const_labels.values())
        self._label_cap = label_cap
        self._on_reject = on_reject
        self._on_error = on_error
        self._gauges: dict[str, _Gauge] = {}
        self._sources: dict[str, _Source] = {}
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

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

    async def refresh(self) -> None:
        """Run every source whose cached values are older than its ttl."""
        async with self._loop_lock():
            now = monotonic()
            due = [s for s in self._sources.values() if now - s.fetched_at >= s.ttl]
            if due:
                await asyncio.gather(*(self._run(s) for s in due))

    async def _run(self, source: _Source) -> None:
        try:
            result = await asyncio.wait_for(read_value(source.fn), source.timeout)
            source.values = self._normalise(source, result)
        except TimeoutError:
            log.warning("scrape-time source %s timed out after %.1fs", source.name, source.timeout)
            source.values = {}
            self._on_error(source.name, "timeout")
        except Exception:
            log.exception("scrape-time source %s failed", source.name)
            source.values = {}
            self._on_error(source.name, "error")
        source.fetched_at = monotonic()

    def _normalise(
        self, source: _Source, result: Values
    ) -> dict[str, dict[tuple[str, ...], float]]:
        out: dict[str, dict[tuple[str, ...], float]] = {}
        for name, value in result.items():
            if name not in source.gauges:
                raise ValueError(f"source {source.name} returned undeclared gauge {name}")
            gauge = self._gauges[name]
            if isinstance(value, Mapping):
                series = {}
                for key, v in value.items():
                    raw = key if isinstance(key, tuple) else (key,)
                    series[gauge.guard.clean(raw)] = float(v)
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


async def read_value(fn: Callable[[], Any]) -> Any:
    """Call a sync or async reader; a sync one runs in a thread so it cannot block the loop."""
    if inspect.iscoroutinefunction(fn):
        return await fn()
    result = await asyncio.to_thread(fn)
    if inspect.isawaitable(result):
        return await result
    return result
