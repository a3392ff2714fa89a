"""A fault-tolerant view over registries: one failing collector never fails a scrape."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client.metrics_core import Metric

from .process import ProcessReadings

log = logging.getLogger("app_metrics")


class SafeView:
    """Collects from each collector in turn; a collector that raises is skipped and reported.

    ``names`` keeps only the samples with those names (a histogram's or counter's
    family name selects all its samples), like Prometheus's ``name[]`` parameter;
    ``skip`` is a collector rendered by other means; ``readings`` serves the process
    metrics read beside the scrape (``process.py``) while they are fresh.
    """

    def __init__(
        self,
        collectors: Callable[[], Iterable[Any]],
        on_error: Callable[[str], None],
        names: Iterable[str] | None = None,
        skip: object = None,
        readings: ProcessReadings | None = None,
    ) -> None:
        self._collectors = collectors
        self._skip = skip
        self._readings = readings
        self._on_error = on_error
        self._names = frozenset(names) if names else None

    def collect(self) -> Iterator[Metric]:
        for collector in self._collectors():
            if collector is self._skip:
                continue
            try:
                read = self._readings.metrics(collector) if self._readings else None
                metrics = read if read is not None else list(collector.collect())
            except Exception:
                name = type(collector).__name__
                log.exception("collector %s failed; its metrics are left out of this scrape", name)
                self._on_error(name)
                continue
            for metric in metrics:
                if self._names is None:
                    yield metric
                else:
                    kept = self._restrict(metric)
                    if kept is not None:
                        yield kept

    def _restrict(self, metric: Metric) -> Metric | None:
        names = self._names
        assert names is not None
        if metric.name in names or f"{metric.name}_total" in names:
            return metric
        samples = [s for s in metric.samples if s.name in names]
        if not samples:
            return None
        out = Metric(metric.name, metric.documentation, metric.type, metric.unit)
        out.samples = samples
        return out


def registry_collectors(registry: Any) -> Callable[[], list[Any]]:
    """The collectors of a prometheus_client registry, read at each scrape."""

    def collectors() -> list[Any]:
        with registry._lock:
            return list(registry._collector_to_names)

    return collectors
