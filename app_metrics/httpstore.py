"""Where the HTTP metrics live: the per-request hot path.

``LocalStore`` (one process) keeps plain numbers in per-thread shards that only
their own thread writes, so a request costs dict lookups, four additions and
one ``bisect``, without a lock; prometheus_client's children would take five
locks and a Python loop over the buckets.
``SharedStore`` (``PROMETHEUS_MULTIPROC_DIR`` set) uses prometheus_client's
metrics, whose mmap files let every worker's counts add up.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from threading import get_ident
from typing import Any, Protocol

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from .factory import MetricFactory
from .textformat import Prefixes, header, number

REQUESTS = ("http_requests", "HTTP requests answered, by method, route template and status code.")
DURATION = (
    "http_request_duration_seconds",
    "Time from request arrival to the last response byte sent, by route template.",
)
IN_PROGRESS = ("http_requests_in_progress", "HTTP requests whose response is not complete yet.")


class Store(Protocol):
    def series(self, method: str, endpoint: str, status: str) -> Any:
        """A handle for one (method, endpoint, status) label set."""

    def start(self, method: str) -> None:
        """A request arrived."""

    def finish(self, method: str, series: Any, seconds: float) -> None:
        """A request completed; ``series`` is None when it is not measured (excluded)."""


class _Cell:
    """One label set in one thread's shard: its latency histogram, whose total is
    also the request count (so the two can never disagree)."""

    __slots__ = ("buckets", "sum")

    def __init__(self, size: int) -> None:
        self.buckets = [0] * size  # per bucket, not cumulative; the last is +Inf
        self.sum = 0.0


class _Shard:
    """What one thread recorded. Only that thread writes it, so no lock is taken;
    the collector reads it (a GIL-consistent copy of each dict) and sums the shards."""

    __slots__ = ("cells", "finished", "started")

    def __init__(self, methods: Sequence[str]) -> None:
        self.cells: dict[tuple[str, str, str], _Cell] = {}
        self.started = dict.fromkeys(methods, 0)
        self.finished = dict.fromkeys(methods, 0)


class LocalStore:
    """Single-process store, sharded by thread, served by its own ``collect()``.

    ``http_requests_in_progress`` is derived: requests started minus finished.
    """

    def __init__(
        self, factory: MetricFactory, buckets: Sequence[float], methods: Sequence[str]
    ) -> None:
        factory.full_labelnames(("method", "endpoint", "status"))  # rejects clashing const labels
        self._bounds = tuple(b for b in buckets if b != float("inf"))
        self._les = [*(floatToGoString(b) for b in self._bounds), "+Inf"]
        self._methods = tuple(methods)
        self._const_names = tuple(factory.const_labels)
        self._const_values = tuple(factory.const_labels.values())
        self._lock = threading.Lock()  # guards the list of shards only
        self._shards: dict[int, _Shard] = {}
        self._prefixes = Prefixes(factory.const_labels)
        factory.registry.register(self)

    def series(self, method: str, endpoint: str, status: str) -> tuple[str, str, str]:
        return (method, endpoint, status)

    def _shard(self) -> _Shard:
        with self._lock:
            return self._shards.setdefault(get_ident(), _Shard(self._methods))

    def start(self, method: str) -> None:
        shard = self._shards.get(get_ident()) or self._shard()
        shard.started[method] += 1

    def finish(self, method: str, series: tuple[str, str, str] | None, seconds: float) -> None:
        shard = self._shards.get(get_ident()) or self._shard()
        shard.finished[method] += 1
        if series is None:
            return
        cell = shard.cells.get(series)
        if cell is None:
            cell = shard.cells[series] = _Cell(len(self._les))
        cell.buckets[bisect_left(self._bounds, seconds)] += 1  # first bound >= seconds: "le"
        cell.sum += seconds

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(*REQUESTS, labels=())
        yield HistogramMetricFamily(*DURATION, labels=())
        yield GaugeMetricFamily(*IN_PROGRESS, labels=())

    def _snapshot(
        self,
    ) -> tuple[
        dict[tuple[str, str, str], int],
        dict[tuple[str, str], tuple[list[int], list[float]]],
        dict[str, int],
    ]:
        """Counts, histograms (per-bucket counts and sum) and levels summed over the shards."""
        with self._lock:
            shards = list(self._shards.values())
        counts: dict[tuple[str, str, str], int] = {}
        histograms: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
        levels = dict.fromkeys(self._methods, 0)
        for shard in shards:
            # finished before started: a request finishing meanwhile can only make
            # the level read high, never negative
            finished = list(shard.finished.items())
            for method, n in list(shard.started.items()):
                levels[method] += n
            for method, n in finished:
                levels[method] -= n
            for key, cell in list(shard.cells.items()):
                cell_buckets = list(cell.buckets)
                counts[key] = counts.get(key, 0) + sum(cell_buckets)
                buckets, total = histograms.setdefault(key[:2], ([0] * len(self._les), [0.0]))
                for i, n in enumerate(cell_buckets):
                    buckets[i] += n
                total[0] += cell.sum
        return counts, histograms, levels

    def _cumulative(self, buckets: list[int]) -> list[tuple[str, int]]:
        out, running = [], 0
        for le, n in zip(self._les, buckets, strict=True):
            running += n
            out.append((le, running))
        return out

    def collect(self) -> Iterator[Metric]:
        counts, histograms, levels = self._snapshot()
        names, values = self._const_names, self._const_values
        requests = CounterMetricFamily(*REQUESTS, labels=("method", "endpoint", "status", *names))
        for key, count in counts.items():
            requests.add_metric([*key, *values], count)
        duration = HistogramMetricFamily(*DURATION, labels=("method", "endpoint", *names))
        for key, (buckets, total) in histograms.items():
            duration.add_metric([*key, *values], self._cumulative(buckets), total[0])
        in_progress = GaugeMetricFamily(*IN_PROGRESS, labels=("method", *names))
        for method, level in levels.items():
            in_progress.add_metric([method, *values], level)
        yield from (requests, duration, in_progress)

    def render_text(self, openmetrics: bool = False) -> str:
        """The three families as prometheus_client's text (or OpenMetrics) encoder writes them."""
        counts, histograms, levels = self._snapshot()
        prefix = self._prefixes.get
        out = [header(REQUESTS[0] + "_total", REQUESTS[1], "counter", openmetrics)]
        name, labels = REQUESTS[0] + "_total", ("method", "endpoint", "status")
        out += [prefix(name, labels, key) + number(n) + "\n" for key, n in counts.items()]
        out.append(header(*DURATION, "histogram", openmetrics))
        bucket, labels = DURATION[0] + "_bucket", ("method", "endpoint", "le")
        for key, (buckets, total) in histograms.items():
            cumulative = self._cumulative(buckets)
            out += [prefix(bucket, labels, (*key, le)) + number(n) + "\n" for le, n in cumulative]
            count = prefix(DURATION[0] + "_count", labels[:2], key) + number(cumulative[-1][1])
            out.append(count + "\n" + prefix(DURATION[0] + "_sum", labels[:2], key))
            out.append(number(total[0]) + "\n")
        out.append(header(*IN_PROGRESS, "gauge", openmetrics))
        out += [
            prefix(IN_PROGRESS[0], ("method",), (m,)) + number(n) + "\n" for m, n in levels.items()
        ]
        return "".join(out)


class _ClientSeries:
    __slots__ = ("counter", "histogram")

    def __init__(self, counter: Any, histogram: Any) -> None:
        self.counter = counter
        self.histogram = histogram


class SharedStore:
    """Multiprocess store: prometheus_client metrics backed by mmap files."""

    def __init__(
        self, factory: MetricFactory, buckets: Sequence[float], methods: Sequence[str]
    ) -> None:
        self._requests = factory.raw_counter(
            REQUESTS[0] + "_total", REQUESTS[1], ("method", "endpoint", "status")
        )
        self._duration = factory.raw_histogram(*DURATION, ("method", "endpoint"), buckets)
        gauge = factory.raw_gauge(*IN_PROGRESS, ("method",), mode="livesum")
        self._const = tuple(factory.const_labels.values())
        self._levels = {m: gauge.labels(m, *self._const) for m in methods}

    def series(self, method: str, endpoint: str, status: str) -> _ClientSeries:
        return _ClientSeries(
            self._requests.labels(method, endpoint, status, *self._const),
            self._duration.labels(method, endpoint, *self._const),
        )

    def start(self, method: str) -> None:
        self._levels[method].inc()

    def finish(self, method: str, series: _ClientSeries | None, seconds: float) -> None:
        self._levels[method].dec()
        if series is not None:
            series.counter.inc()
            series.histogram.observe(seconds)
