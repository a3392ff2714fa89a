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
import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from itertools import accumulate
from operator import add
from threading import get_ident
from typing import Any, Protocol

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.samples import Exemplar as ClientExemplar
from prometheus_client.utils import floatToGoString

from .exemplars import LABEL, Exemplars, latest, suffix
from .factory import MetricFactory
from .textformat import EXPONENT, Prefixes, header, number, template

REQUESTS = ("http_requests", "HTTP requests answered, by method, route template and status code.")
DURATION = (
    "http_request_duration_seconds",
    "Time from request arrival to the last response byte sent, by route template.",
)
IN_PROGRESS = ("http_requests_in_progress", "HTTP requests whose response is not complete yet.")
_TOTAL, _REQUEST_LABELS = REQUESTS[0] + "_total", ("method", "endpoint", "status")
_BUCKET, _BUCKET_LABELS = DURATION[0] + "_bucket", ("method", "endpoint", "le")
_MAX_LINES = 100_000  # cached label sets per family
Bucket = tuple[int, ...]  # per-bucket counts (not cumulative), the last for +Inf


class Store(Protocol):
    def series(self, method: str, endpoint: str, status: str) -> Any:
        """A handle for one (method, endpoint, status) label set."""

    def start(self, method: str) -> None:
        """A request arrived."""

    def finish(self, method: str, series: Any, seconds: float, trace_id: str | None = None) -> None:
        """A request completed; ``series`` is None when it is not measured (excluded);
        ``trace_id``: its trace, kept as its duration bucket's latest exemplar."""


class _Cell:
    """One label set in one thread's shard: its latency histogram, whose total is
    also the request count (so the two can never disagree)."""

    __slots__ = ("buckets", "exemplars", "sum")

    def __init__(self, size: int) -> None:
        self.buckets = [0] * size  # per bucket, not cumulative; the last is +Inf
        self.sum = 0.0
        self.exemplars: Exemplars | None = None  # made by the first traced request


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
        self._lines = _Lines(factory.const_labels, self._les)
        # per (format, with exemplars): the label sets (counters, histograms) the cached whole
        # template is for
        self._templates: dict[tuple[bool, bool], tuple[tuple[Any, ...], tuple[Any, ...], str]] = {}
        factory.registry.register(self)

    def series(self, method: str, endpoint: str, status: str) -> tuple[str, str, str]:
        return (method, endpoint, status)

    def _shard(self) -> _Shard:
        with self._lock:
            return self._shards.setdefault(get_ident(), _Shard(self._methods))

    def start(self, method: str) -> None:
        shard = self._shards.get(get_ident()) or self._shard()
        shard.started[method] += 1

    def finish(
        self,
        method: str,
        series: tuple[str, str, str] | None,
        seconds: float,
        trace_id: str | None = None,
    ) -> None:
        shard = self._shards.get(get_ident()) or self._shard()
        shard.finished[method] += 1
        if series is None:
            return
        cell = shard.cells.get(series)
        if cell is None:
            cell = shard.cells[series] = _Cell(len(self._les))
        bucket = bisect_left(self._bounds, seconds)  # first bound >= seconds: "le"
        cell.buckets[bucket] += 1
        cell.sum += seconds
        if trace_id is not None:
            if cell.exemplars is None:
                cell.exemplars = [None] * len(self._les)
            cell.exemplars[bucket] = (trace_id, seconds, time.time())

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(*REQUESTS, labels=())
        yield HistogramMetricFamily(*DURATION, labels=())
        yield GaugeMetricFamily(*IN_PROGRESS, labels=())

    def _snapshot(
        self,
    ) -> tuple[
        dict[tuple[str, str, str], tuple[Bucket, float]],
        dict[str, int],
        dict[tuple[str, str], Exemplars],
    ]:
        """Per-bucket counts and sum of each label set, and the levels, summed over the shards;
        and each histogram's latest exemplar per bucket, where a traced request left one."""
        with self._lock:
            shards = list(self._shards.values())
        cells: dict[tuple[str, str, str], tuple[Bucket, float]] = {}
        levels = dict.fromkeys(self._methods, 0)
        exemplars: dict[tuple[str, str], Exemplars] = {}
        for shard in shards:
            # finished before started: a request finishing meanwhile can only make
            # the level read high, never negative
            finished = list(shard.finished.items())
            for method, n in list(shard.started.items()):
                levels[method] += n
            for method, n in finished:
                levels[method] -= n
            for key, cell in list(shard.cells.items()):
                buckets, total = tuple(cell.buckets), cell.sum
                known = cells.get(key)
                if known is not None:
                    buckets, total = tuple(map(add, known[0], buckets)), known[1] + total
                cells[key] = (buckets, total)
                if cell.exemplars is not None:
                    latest(exemplars.setdefault(key[:2], [None] * len(buckets)), cell.exemplars)
        return cells, levels, exemplars

    @staticmethod
    def _histograms(
        cells: dict[tuple[str, str, str], tuple[Bucket, float]],
    ) -> dict[tuple[str, str], tuple[Bucket, float]]:
        """The cells summed per (method, endpoint): the histogram has no status label."""
        out: dict[tuple[str, str], tuple[Bucket, float]] = {}
        for key, (buckets, total) in cells.items():
            known = out.get(key[:2])
            if known is not None:
                buckets, total = tuple(map(add, known[0], buckets)), known[1] + total
            out[key[:2]] = (buckets, total)
        return out

    def collect(self) -> Iterator[Metric]:
        cells, levels, exemplars = self._snapshot()
        names, values = self._const_names, self._const_values
        requests = CounterMetricFamily(*REQUESTS, labels=("method", "endpoint", "status", *names))
        for key, (buckets, _) in cells.items():
            requests.add_metric([*key, *values], sum(buckets))
        duration = HistogramMetricFamily(*DURATION, labels=("method", "endpoint", *names))
        for key, (buckets, total) in self._histograms(cells).items():
            cumulative: list[Any] = list(zip(self._les, accumulate(buckets), strict=True))
            for i, exemplar in enumerate(exemplars.get(key, ())):
                if exemplar is not None:
                    trace_id, seconds, at = exemplar
                    cumulative[i] = (*cumulative[i], ClientExemplar({LABEL: trace_id}, seconds, at))
            duration.add_metric([*key, *values], cumulative, total)
        in_progress = GaugeMetricFamily(*IN_PROGRESS, labels=("method", *names))
        for method, level in levels.items():
            in_progress.add_metric([method, *values], level)
        yield from (requests, duration, in_progress)

    def render_text(self, openmetrics: bool = False) -> str:
        """The three families as prometheus_client's text (or OpenMetrics) encoder writes them.

        While the label sets stay the same, the whole text is one cached printf-style
        template and a scrape formats all the counts in one call; from 1e6 on (an exponent is
        due), line by line.
        """
        cells, levels, exemplars = self._snapshot()
        histograms = self._histograms(cells)
        if not (openmetrics and exemplars):  # the text format has no exemplars
            exemplars = {}
        args: list[Any] = [sum(buckets) for buckets, _ in cells.values()]
        largest = 0
        for key, (buckets, total) in histograms.items():
            cumulative = list(accumulate(buckets))
            largest = max(largest, cumulative[-1])  # no count is larger than its histogram's
            if exemplars:  # each bucket's count, then its exemplar ("" when none)
                marks = exemplars.get(key) or [None] * len(cumulative)
                pairs = zip(cumulative, map(suffix, marks), strict=True)
                args += [x for pair in pairs for x in pair]
            else:
                args += cumulative
            args += (cumulative[-1], number(total))
        if largest >= EXPONENT:
            return self._lines_one_by_one(cells, histograms, levels, openmetrics, exemplars)
        args += [number(n) for n in levels.values()]
        text = self._template(tuple(cells), tuple(histograms), openmetrics, bool(exemplars))
        return text % tuple(args)

    def _template(
        self,
        cells: tuple[tuple[str, str, str], ...],
        histograms: tuple[tuple[str, str], ...],
        openmetrics: bool,
        exemplars: bool = False,
    ) -> str:
        kind = (openmetrics, exemplars)
        known = self._templates.get(kind)
        if known is not None and known[0] == cells and known[1] == histograms:
            return known[2]
        lines = self._lines
        text = "".join(
            [
                template(header(_TOTAL, REQUESTS[1], "counter", openmetrics)),
                *(lines.counter(key) for key in cells),
                template(header(*DURATION, "histogram", openmetrics)),
                *(lines.histogram(key, exemplars) for key in histograms),
                template(header(*IN_PROGRESS, "gauge", openmetrics)),
                *(template(lines.level(method)) + "%s\n" for method in self._methods),
            ]
        )
        self._templates[kind] = (cells, histograms, text)
        return text

    def _lines_one_by_one(
        self,
        cells: dict[tuple[str, str, str], tuple[Bucket, float]],
        histograms: dict[tuple[str, str], tuple[Bucket, float]],
        levels: dict[str, int],
        openmetrics: bool,
        exemplars: dict[tuple[str, str], Exemplars],
    ) -> str:
        lines = self._lines
        out = [header(_TOTAL, REQUESTS[1], "counter", openmetrics)]
        out += [lines.counter_line(key, sum(buckets)) for key, (buckets, _) in cells.items()]
        out.append(header(*DURATION, "histogram", openmetrics))
        for key, (buckets, total) in histograms.items():
            marks = [suffix(e) for e in exemplars.get(key, ())]
            out.append(lines.histogram_lines(key, list(accumulate(buckets)), total, marks))
        out.append(header(*IN_PROGRESS, "gauge", openmetrics))
        out += [lines.level(m) + number(n) + "\n" for m, n in levels.items()]
        return "".join(out)


class _Lines:
    """Each label set's lines, cached: prefixes, and printf-style templates for whole
    counts below 1e6 (``n.0``: no exponent yet)."""

    def __init__(self, const: dict[str, str], les: Sequence[str]) -> None:
        self._prefix = Prefixes(const).get
        self._les = tuple(les)
        self._counters: dict[tuple[str, str, str], str] = {}
        self._histograms: dict[tuple[str, str, bool], str] = {}

    def counter(self, key: tuple[str, str, str]) -> str:
        line = self._counters.get(key)
        if line is None:
            line = template(self._prefix(_TOTAL, _REQUEST_LABELS, key)) + "%d.0\n"
            self._counters = _bounded(self._counters)
            self._counters[key] = line
        return line

    def counter_line(self, key: tuple[str, str, str], n: float) -> str:
        return self._prefix(_TOTAL, _REQUEST_LABELS, key) + number(n) + "\n"

    def histogram(self, key: tuple[str, str], exemplars: bool = False) -> str:
        """Buckets, then ``_count``, then ``_sum`` (formatted by the caller); with
        ``exemplars``, each bucket's count is followed by its exemplar (a string)."""
        lines = self._histograms.get((*key, exemplars))
        if lines is None:
            buckets, count_sum = self._bucket_prefixes(key), self._count_sum_prefixes(key)
            bucket = "%d.0%s\n" if exemplars else "%d.0\n"
            lines = "".join(template(p) + bucket for p in buckets)
            lines += template(count_sum[0]) + "%d.0\n" + template(count_sum[1]) + "%s\n"
            self._histograms = _bounded(self._histograms)
            self._histograms[(*key, exemplars)] = lines
        return lines

    def histogram_lines(
        self, key: tuple[str, str], cumulative: list[int], total: float, marks: Sequence[str] = ()
    ) -> str:
        values = [*cumulative, cumulative[-1], total]
        ends = [*marks, *[""] * (len(values) - len(marks))]
        prefixes = [*self._bucket_prefixes(key), *self._count_sum_prefixes(key)]
        return "".join(
            p + number(v) + end + "\n" for p, v, end in zip(prefixes, values, ends, strict=True)
        )

    def level(self, method: str) -> str:
        return self._prefix(IN_PROGRESS[0], ("method",), (method,))

    def _bucket_prefixes(self, key: tuple[str, str]) -> list[str]:
        return [self._prefix(_BUCKET, _BUCKET_LABELS, (*key, le)) for le in self._les]

    def _count_sum_prefixes(self, key: tuple[str, str]) -> list[str]:
        labels = _BUCKET_LABELS[:2]
        return [self._prefix(DURATION[0] + suffix, labels, key) for suffix in ("_count", "_sum")]


def _bounded(cache: dict[Any, str]) -> dict[Any, str]:
    """The cache, or a fresh one when it has grown past its bound (label sets churned)."""
    return {} if len(cache) >= _MAX_LINES else cache


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

    def finish(
        self,
        method: str,
        series: _ClientSeries | None,
        seconds: float,
        trace_id: str | None = None,  # unkept: prometheus_client's mmap files hold no exemplars
    ) -> None:
        self._levels[method].dec()
        if series is not None:
            series.counter.inc()
            series.histogram.observe(seconds)
