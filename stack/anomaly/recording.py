"""The anomaly recording rules over the replayed month. Prometheus evaluates rules only as
time passes, and ``promtool tsdb create-blocks-from rules`` writes a block per rule and
2 hours (thousands for a month, minutes of work, and a rule cannot read what the same run
records), so each rule is evaluated here as Prometheus would: its expression asked as a
range query at the evaluation interval, the result named ``record`` with the rule's
``labels``, backfilled as blocks. The rules go in passes, one per depth of the recorded
names they read (the signals, the baseline, the spread, the score), Prometheus restarted
between passes to load the new blocks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..promql import metric_names
from .backfill import backfill
from .openmetrics import series_name
from .prometheus import Prometheus


def levels(rules: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The recording rules by depth: a rule's depth is one more than the deepest recorded
    name it reads (0 for a rule that reads only scraped series)."""
    recorded = {r["record"] for r in rules}
    depth: dict[str, int] = {}
    for _ in range(len(rules)):  # bounded: a cycle is no rule file Prometheus loads
        for rule in rules:
            reads = metric_names(rule["expr"]) & recorded
            if all(name in depth for name in reads):
                level = 1 + max((depth[n] for n in reads), default=-1)
                depth[rule["record"]] = max(depth.get(rule["record"], 0), level)
    found: list[list[dict[str, Any]]] = []
    for rule in rules:
        level = depth[rule["record"]]
        found += [[] for _ in range(level + 1 - len(found))]
        found[level].append(rule)
    return found


def record(prometheus: Prometheus, rules: list[dict[str, Any]], spans: list[tuple[int, int]],
           interval: int, work: Path) -> int:  # fmt: skip
    """Record each depth of ``rules`` over its span (``spans[depth]``, the last for the
    deeper ones); returns the samples recorded."""
    samples = 0
    for depth, level in enumerate(levels(rules)):
        start, end = spans[min(depth, len(spans) - 1)]
        series = {}
        for rule in level:
            for labels, points in prometheus.query_range(rule["expr"], start, end, interval):
                named = {**labels, **rule.get("labels", {}), "__name__": rule["record"]}
                series[series_name(named)] = points
        prometheus.stop()
        samples += backfill(series, work, prometheus.tsdb)
        prometheus.start()
    return samples
