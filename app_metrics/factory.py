"""Creates the module's metrics with constant labels, a label guard and child caching."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.samples import Sample

from .labels import DEFAULT_LABEL_CAP, Family, LabelGuard

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


# Every label name a family of this module uses, scrape-time gauges included.
MODULE_LABELS = frozenset((
    "method", "endpoint", "status", "le", "quantile", "metric", "label", "reason",
    "collector", "source", "check", "provider", "error_type", "operation", "task_type",
    "outcome", "queue", "limit",
))  # fmt: skip


def check_const_labels(const_labels: Mapping[str, str]) -> dict[str, str]:
    """Validate constant labels before anything is registered; ValueError names the culprit."""
    out = {}
    for name, value in const_labels.items():
        if not _LABEL_NAME.match(name) or name.startswith("__"):
            raise ValueError(f"const label name {name!r} is not a valid Prometheus label name")
        if name in MODULE_LABELS:
            raise ValueError(f"const label {name!r} clashes with a label of app_metrics' metrics")
        out[name] = str(value)
    return out


class _Counter(Counter):
    """A counter without the ``_created`` series (half the series, no information
    Prometheus 2 uses)."""

    def _child_samples(self) -> Iterable[Sample]:
        return [s for s in super()._child_samples() if s.name != "_created"]


class _Histogram(Histogram):
    """A histogram without the ``_created`` series."""

    def _child_samples(self) -> Iterable[Sample]:
        return [s for s in super()._child_samples() if s.name != "_created"]


class MetricFactory:
    """One place that knows the registry, the constant labels and the label cap."""

    def __init__(
        self,
        registry: CollectorRegistry,
        const_labels: Mapping[str, str],
        label_cap: int = DEFAULT_LABEL_CAP,
    ) -> None:
        self.registry = registry
        self.const_labels = check_const_labels(const_labels)
        self.label_cap = label_cap
        self._const_names = tuple(self.const_labels)
        self._const_values = tuple(self.const_labels.values())
        self.rejections = _Counter(
            "app_metrics_label_rejections_total",
            "Label values replaced by <overflow> (past the per-label cap) "
            "or <redacted> (looked like personal data).",
            ("metric", "label", "reason", *self._const_names),
            registry=registry,
        )

    def full_labelnames(self, labelnames: Sequence[str]) -> tuple[str, ...]:
        clash = set(labelnames) & set(self._const_names)
        if clash:
            raise ValueError(f"const labels {sorted(clash)} clash with metric labels")
        return (*labelnames, *self._const_names)

    def reject(self, metric: str, label: str, reason: str) -> None:
        self.rejections.labels(metric, label, reason, *self._const_values).inc()

    def _wrap(
        self, metric: Counter | Gauge | Histogram, name: str, labelnames: Sequence[str]
    ) -> Family:
        return Family(metric, self._const_values, self.guard(name, labelnames))

    def guard(self, name: str, labelnames: Sequence[str]) -> LabelGuard:
        return LabelGuard(name, labelnames, self.label_cap, self.reject)

    def raw_counter(self, name: str, doc: str, labelnames: Sequence[str] = ()) -> Counter:
        """A prometheus_client counter with the constant labels appended to ``labelnames``."""
        return _Counter(name, doc, self.full_labelnames(labelnames), registry=self.registry)

    def raw_gauge(
        self, name: str, doc: str, labelnames: Sequence[str] = (), mode: str = "livesum"
    ) -> Gauge:
        return Gauge(
            name,
            doc,
            self.full_labelnames(labelnames),
            registry=self.registry,
            multiprocess_mode=mode,  # type: ignore[arg-type]
        )

    def raw_histogram(
        self, name: str, doc: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> Histogram:
        return _Histogram(
            name, doc, self.full_labelnames(labelnames), registry=self.registry, buckets=buckets
        )

    def counter(self, name: str, doc: str, labelnames: Sequence[str] = ()) -> Family:
        return self._wrap(self.raw_counter(name, doc, labelnames), name, labelnames)

    def histogram(
        self, name: str, doc: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> Family:
        return self._wrap(self.raw_histogram(name, doc, labelnames, buckets), name, labelnames)
