"""The fast writers write what prometheus_client's encoders write, byte for byte."""

from __future__ import annotations

import threading

import pytest
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.samples import Exemplar

from app_metrics.families import FamilyWriter

from .test_endpoint import instrumented

INF, NAN = float("inf"), float("nan")
ODD = 'a "quoted" \\ back\nslash {brace} 100% %s ü'


def family(kind: str) -> Metric:
    """One family per case: the values and label values that need care."""
    if kind == "counter":
        f = CounterMetricFamily("jobs", 'Done "jobs" \\ with\nnewline.', labels=("queue", "q2"))
        f.add_metric([ODD, "x"], 3)
        f.add_metric(["b", ""], 1_234_567)
        return f
    if kind == "counter with created":
        f = CounterMetricFamily("born", "Created too.", labels=("a",), created=1700000000.5)
        f.add_metric(["x"], 2, created=1700000001.25)
        return f
    if kind == "gauge":
        f = GaugeMetricFamily("level", "Levels.", labels=("which",))
        for i, v in enumerate((NAN, INF, -INF, -0.0, 0.1, 1e-5, 999_999.5, 1e6, 1.5e16, -2e6)):
            f.add_metric([str(i)], v)
        return f
    if kind == "histogram":
        f = HistogramMetricFamily("wait_seconds", "Waits.", labels=("zone", "method"))
        f.add_metric(["z", "GET"], [("0.1", 1), ("1.0", 3), ("+Inf", 4)], 2.5)
        return f
    if kind == "summary":
        f = SummaryMetricFamily("size_bytes", "Sizes.", labels=("k",))
        f.add_metric(["v"], count_value=4, sum_value=17.5)
        return f
    if kind == "untyped":
        f = Metric("thing", "Unknown kind.", "unknown")
        f.add_sample("thing", {"b": "2", "a": "1"}, 7)
        return f
    if kind == "info":
        f = InfoMetricFamily("build", "Build.", labels=())
        f.add_metric([], {"version": "1.2"})
        return f
    if kind == "timestamp":
        f = GaugeMetricFamily("stamped", "Stamped.", labels=("a",))
        f.add_metric(["x"], 1, timestamp=1700000000.123)
        return f
    if kind == "exemplar":
        f = Metric("traced", "Traced.", "counter")
        f.add_sample("traced_total", {}, 1, exemplar=Exemplar({"trace_id": "abc"}, 1.0))
        return f
    if kind == "unit":
        return GaugeMetricFamily("heat_celsius", "Heat.", value=21, unit="celsius")
    if kind == "colon":
        return GaugeMetricFamily("job:rate:sum", "A recording rule's name.", value=1)
    raise AssertionError(kind)


KINDS = (
    "counter", "counter with created", "gauge", "histogram", "summary", "untyped", "info",
    "timestamp", "exemplar", "unit", "colon",
)  # fmt: skip


class Families:
    def __init__(self, *metrics: Metric) -> None:
        self.metrics = metrics

    def collect(self) -> list[Metric]:
        return list(self.metrics)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_of_family_is_written_as_prometheus_client_writes_it(kind: str) -> None:
    writer = FamilyWriter()
    metrics = Families(family(kind))
    for _ in range(2):  # the second time from the cached prefixes
        assert writer.write(metrics.collect(), False) == generate_latest(metrics).decode()  # type: ignore[arg-type]
        om = openmetrics_latest(metrics).decode().removesuffix("# EOF\n")
        assert writer.write(metrics.collect(), True) == om


def blocks(text: str) -> dict[str, str]:
    """The exposition cut into families, by name (their order aside)."""
    out: dict[str, str] = {}
    name = ""
    for line in text.splitlines(keepends=True):
        if line.startswith("# HELP "):
            name = line.split()[2]
        out[name] = out.get(name, "") + line
    return out


@pytest.mark.parametrize(
    "accept",
    ["", "application/openmetrics-text; version=1.0.0", "text/plain; version=1.0.0; escaping=dots"],
)
def test_a_whole_scrape_holds_the_families_prometheus_client_writes(accept: str) -> None:
    _, metrics = instrumented(const_labels={"service": ODD})
    metrics.http.observe("GET", ODD, 200, 0.3)
    metrics.http.observe("GET", ODD, 500, 12.0)  # another status: the same histogram
    metrics.sms.message("twilio", "success", cost=0.01, duration_seconds=0.2)
    metrics.registry.register(Families(*(family(k) for k in KINDS)))
    ours, content_type = metrics.render(accept)
    encoder, theirs_type = choose_encoder(accept)
    theirs = encoder(metrics.registry).decode()
    assert content_type == theirs_type
    assert blocks(ours.decode()) == blocks(theirs)
    assert ours.decode().endswith("# EOF\n") == theirs.endswith("# EOF\n")


def test_counts_from_several_threads_and_past_a_million_are_written_exactly() -> None:
    _, metrics = instrumented()
    local = metrics.http.local_store
    assert local is not None

    def observe() -> None:
        for seconds in (0.001, 0.3, 7.0):
            metrics.http.observe("GET", "/x", 200, seconds)

    worker = threading.Thread(target=observe)
    worker.start()
    worker.join()
    observe()  # a second shard, the same label sets
    assert local.render_text() == generate_latest(local).decode()  # type: ignore[arg-type]
    metrics.http.observe("POST", "/y", 201, 0.2)  # a new label set: a new template
    assert local.render_text() == generate_latest(local).decode()  # type: ignore[arg-type]
    for shard in local._shards.values():  # past 1e6 the counts are written with an exponent
        for cell in shard.cells.values():
            cell.buckets[0] += 1_234_567
    text = local.render_text()
    assert "e+06" in text
    assert text == generate_latest(local).decode()  # type: ignore[arg-type]
