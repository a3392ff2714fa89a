"""Where the HTTP metrics live: the per-request hot path.

``LocalStore`` (one process) keeps plain numbers under one lock and renders them
as a collector: one ``bisect`` and one lock per request, about 1 µs, where
prometheus_client's children take five locks and a Python loop over the buckets.
``SharedStore`` (``PROMETHEUS_MULTIPROC_DIR`` set) uses prometheus_client's
metrics, whose mmap files let every worker's counts add up.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from .factory import MetricFactory

REQUESTS = ("http_requests", "HTTP requests answered, by method, route template and status code.")
DURATION = (
    "http_request_duration_seconds",
    "Time from request arrival to the last response byte sent, by route template.",
)
IN_PROGRESS = ("http_requests_in_progress", "HTTP requests whose response is not complete yet.")


class Recorder(Protocol):
    def observe(self, seconds: float) -> None: ...


class Level(Protocol):
    def inc(self) -> None: ...
    def dec(self) -> None: ...


class Store(Protocol):
    def recorder(self, method: str, endpoint: str, status: str) -> Recorder: ...
    def level(self, method: str) -> Level: ...


class _Histogram:
    __slots__ = ("buckets", "sum")

    def __init__(self, size: int) -> None:
        self.buckets = [0] * size  # per bucket, not cumulative; the last is +Inf
        self.sum = 0.0


class _Series:
    """One (method, endpoint, status): its request count and its endpoint's histogram."""

    __slots__ = ("bounds", "count", "histogram", "lock")

    def __init__(self, bounds: tuple[float, ...], histogram: _Histogram, lock: Any) -> None:
        self.bounds = bounds
        self.count = 0
        self.histogram = histogram
        self.lock = lock

    def observe(self, seconds: float) -> None:
        i = bisect_left(self.bounds, seconds)  # first bound >= seconds: Prometheus' "le"
        with self.lock:
            self.count += 1
            self.histogram.buckets[i] += 1
            self.histogram.sum += seconds


class _Level:
    __slots__ = ("lock", "value")

    def __init__(self, lock: Any) -> None:
        self.lock = lock
        self.value = 0

    def inc(self) -> None:
        with self.lock:
            self.value += 1

    def dec(self) -> None:
        with self.lock:
            self.value -= 1


class LocalStore:
    """Single-process store, served by its own ``collect()``."""

    def __init__(self, factory: MetricFactory, buckets: Sequence[float]) -> None:
        self._bounds = tuple(b for b in buckets if b != float("inf"))
        self._les = [*(floatToGoString(b) for b in self._bounds), "+Inf"]
        factory.full_labelnames(("method", "endpoint", "status"))  # rejects clashing const labels
        self._const_names = tuple(factory.const_labels)
        self._const_values = tuple(factory.const_labels.values())
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str, str], _Series] = {}
        self._histograms: dict[tuple[str, str], _Histogram] = {}
        self._levels: dict[str, _Level] = {}
        factory.registry.register(self)

    def recorder(self, method: str, endpoint: str, status: str) -> _Series:
        with self._lock:
            series = self._series.get((method, endpoint, status))
            if series is None:
                histogram = self._histograms.get((method, endpoint))
                if histogram is None:
                    histogram = self._histograms[method, endpoint] = _Histogram(len(self._les))
                series = self._series[method, endpoint, status] = _Series(
                    self._bounds, histogram, self._lock
                )
            return series

    def level(self, method: str) -> _Level:
        with self._lock:
            return self._levels.setdefault(method, _Level(self._lock))

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(*REQUESTS, labels=())
        yield HistogramMetricFamily(*DURATION, labels=())
        yield GaugeMetricFamily(*IN_PROGRESS, labels=())

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts = [(key, s.count) for key, s in self._series.items()]
            histograms = [(key, list(h.buckets), h.sum) for key, h in self._histograms.items()]
            levels = [(key, level.value) for key, level in self._levels.items()]
        names, values = self._const_names, self._const_values
        requests = CounterMetricFamily(*REQUESTS, labels=("method", "endpoint", "status", *names))
        for key, count in counts:
            requests.add_metric([*key, *values], count)
        duration = HistogramMetricFamily(*DURATION, labels=("method", "endpoint", *names))
        for key, buckets, total in histograms:
            cumulative, running = [], 0
            for le, n in zip(self._les, buckets, strict=True):
                running += n
                cumulative.append((le, running))
            duration.add_metric([*key, *values], cumulative, total)
        in_progress = GaugeMetricFamily(*IN_PROGRESS, labels=("method", *names))
        for key, level in levels:
            in_progress.add_metric([key, *values], level)
        yield from (requests, duration, in_progress)


class _ClientSeries:
    __slots__ = ("counter", "histogram")

    def __init__(self, counter: Any, histogram: Any) -> None:
        self.counter = counter
        self.histogram = histogram

    def observe(self, seconds: float) -> None:
        self.counter.inc()
        self.histogram.observe(seconds)


class SharedStore:
    """Multiprocess store: prometheus_client metrics backed by mmap files."""

    def __init__(self, factory: MetricFactory, buckets: Sequence[float]) -> None:
        self._requests = factory.raw_counter(
            REQUESTS[0] + "_total", REQUESTS[1], ("method", "endpoint", "status")
        )
        self._duration = factory.raw_histogram(*DURATION, ("method", "endpoint"), buckets)
        self._in_progress = factory.raw_gauge(*IN_PROGRESS, ("method",), mode="livesum")
        self._const = tuple(factory.const_labels.values())

    def recorder(self, method: str, endpoint: str, status: str) -> _ClientSeries:
        return _ClientSeries(
            self._requests.labels(method, endpoint, status, *self._const),
            self._duration.labels(method, endpoint, *self._const),
        )

    def level(self, method: str) -> Any:
        return self._in_progress.labels(method, *self._const)
