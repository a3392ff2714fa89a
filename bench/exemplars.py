"""Benchmark: what exemplars add to a request, with and without OpenTelemetry.

The middleware's added steps, each timed alone as the request path runs them: the trace id
lookup (``None`` without the SDK: one ``is None`` check; with the SDK, outside and inside a
sampled span) and the recording (``HTTPMetrics.finish`` with and without a trace id). Each
figure is the best of many repeats, which a busy machine disturbs far less than a median of
whole requests (``bench/overhead.py``, whose +10 µs target these add to).

Run with ``make bench`` (``.venv/bin/python bench/exemplars.py``).
"""

from __future__ import annotations

import timeit
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from app_metrics import exemplars
from app_metrics.factory import MetricFactory
from app_metrics.http import HTTP_BUCKETS, HTTPMetrics

NUMBER, REPEAT = 20_000, 30
TARGET_US = 10.0  # the whole middleware's budget per request (bench/overhead.py)
LOOKUP = "t = None if look is None else look()"  # as MetricsMiddleware's send wrapper


def best_ns(stmt: str, names: dict[str, Any]) -> float:
    return min(timeit.repeat(stmt, globals=names, number=NUMBER, repeat=REPEAT)) / NUMBER * 1e9


def main() -> None:
    if exemplars.current_trace_id is None:
        raise SystemExit("opentelemetry-sdk is not installed here: make venv installs it")
    metrics = HTTPMetrics(MetricFactory(CollectorRegistry(), {}), HTTP_BUCKETS, False)
    metrics.finish("GET", "/items/{item_id}", 200, 0.01)  # the label set exists, as in steady use
    names: dict[str, Any] = {"m": metrics, "look": None}
    finish = "m.finish('GET', '/items/{{item_id}}', 200, 0.01{})"
    plain = best_ns(finish.format(""), names)
    rows = [("no OpenTelemetry SDK: the lookup (one None check)", best_ns(LOOKUP, names))]
    passed = best_ns(finish.format(", None"), names) - plain
    rows.append(("  recording: passing trace_id=None (with - without)", passed))
    names["look"] = exemplars.current_trace_id
    rows.append(("SDK installed, no span: the lookup", best_ns(LOOKUP, names)))
    with TracerProvider().get_tracer("bench").start_as_current_span("request"):
        rows.append(("SDK, a sampled span: the lookup", best_ns(LOOKUP, names)))
        names["trace_id"] = exemplars.current_trace_id()
    traced = best_ns(finish.format(", trace_id"), names)
    rows.append(("  recording the exemplar (finish with a trace id - without)", traced - plain))
    print(f"\n== exemplars: added per request (best of {REPEAT} x {NUMBER:,}) ==")
    print(f"  (recording a request as before: {plain:.0f} ns)")
    for what, ns in rows:
        print(f"  {what:<62} {ns:7.0f} ns")
    with_span = rows[3][1] + rows[4][1]
    print(f"  with a sampled span, together: {with_span / 1000:.2f} µs (budget of the whole")
    print(f"  middleware: {TARGET_US:g} µs; a span itself costs tens of µs, bench/overhead.py)")


if __name__ == "__main__":
    main()
