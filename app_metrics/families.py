"""Collected metric families written as prometheus_client's encoders write them, faster.

Each sample's ``name{labels} `` prefix is cached by its name and labels, so a scrape
formats only the values. A family this writer does not cover (timestamps, exemplars,
units, info and state sets, the text format's separate ``_created`` families, names that
need escaping) is written by prometheus_client itself: the output is the same either way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from .textformat import escape_value, line_prefix, number

_MAX_PREFIXES = 200_000
# names written as they are in both formats (OpenMetrics escapes a colon in a sample name)
PLAIN = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TEXT_TYPES = {
    "counter": "counter",
    "gauge": "gauge",
    "histogram": "histogram",
    "summary": "summary",
    "unknown": "untyped",
}
_SEPARATE = ("_created", "_gsum", "_gcount")  # the text format moves these to families of their own


class _Unsupported(Exception):
    """A family this writer leaves to prometheus_client."""


def headers(name: str, doc: str, kind: str, openmetrics: bool) -> str:
    """A family's HELP and TYPE lines; ``name`` is the family's (``Metric.name``)."""
    if openmetrics:
        return f"# HELP {name} {escape_value(doc)}\n# TYPE {name} {kind}\n"
    if kind == "counter":
        name += "_total"
    doc = doc.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {doc}\n# TYPE {name} {_TEXT_TYPES[kind]}\n"


class FamilyWriter:
    """Writes collected families; thread-safe (a cache miss only builds a prefix twice)."""

    def __init__(self) -> None:
        self._prefixes: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}

    def write(self, metrics: Iterable[Metric], openmetrics: bool) -> str:
        """The families' exposition, without OpenMetrics' closing ``# EOF``."""
        out = []
        for metric in metrics:
            try:
                out.append(self._family(metric, openmetrics))
            except _Unsupported:
                out.append(_by_prometheus_client(metric, openmetrics))
        return "".join(out)

    def _family(self, metric: Metric, openmetrics: bool) -> str:
        if metric.unit or metric.type not in _TEXT_TYPES or not PLAIN.fullmatch(metric.name):
            raise _Unsupported
        out = [headers(metric.name, metric.documentation, metric.type, openmetrics)]
        prefixes = self._prefixes
        for s in metric.samples:
            if s.timestamp is not None or s.exemplar is not None or s.native_histogram:
                raise _Unsupported
            if not openmetrics and s.name.endswith(_SEPARATE):
                raise _Unsupported
            key = (s.name, tuple(s.labels.items()))
            prefix = prefixes.get(key)
            if prefix is None:
                prefix = self._prefix(key)
            out.append(prefix + number(s.value) + "\n")
        return "".join(out)

    def _prefix(self, key: tuple[str, tuple[tuple[str, str], ...]]) -> str:
        name, labels = key
        if not PLAIN.fullmatch(name) or not all(PLAIN.fullmatch(k) for k, _ in labels):
            raise _Unsupported
        if len(self._prefixes) >= _MAX_PREFIXES:
            self._prefixes = {}
        prefix = self._prefixes[key] = line_prefix(name, labels)
        return prefix


class _One:
    def __init__(self, metric: Metric) -> None:
        self._metric = metric

    def collect(self) -> list[Metric]:
        return [self._metric]


def _by_prometheus_client(metric: Metric, openmetrics: bool) -> str:
    if openmetrics:
        return openmetrics_latest(_One(metric)).decode().removesuffix("# EOF\n")
    return generate_latest(_One(metric)).decode()  # type: ignore[arg-type]
