"""Process metrics read after a scrape's answer, not before it, while the metrics listener runs.

prometheus_client's ``ProcessCollector`` reads ``/proc`` (stat, limits, the fd folder) at each
collect: a dozen system calls, each giving the GIL up. With the event loop saturated, each
takes the GIL back only once the loop's thread lets go of it (the switch interval, 5 ms), so
they were 14 ms of a listener's 20 ms answer (``bench/listener.py``). A thread of their own
reading them every second made it worse in the stack (API p99 38 → 87 ms): its burst of
system calls, when it met a scrape, made the scrape wait for the GIL behind it too. So the
listener reads them once its answer is sent (``read``), for the next scrape to serve: a
reading at most ``MAX_AGE`` seconds old is served, an older one (or none: the first scrape,
a failed reading) is read in the scrape, as before. Process values are thus one scrape
interval old, which ``rate()`` and the gauges' panels do not notice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from time import monotonic
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.process_collector import ProcessCollector

MAX_AGE = 120.0  # seconds: two of Prometheus' default scrape intervals


class ProcessReadings:
    """The latest reading of each ``ProcessCollector`` among ``collectors()``."""

    def __init__(self, collectors: Callable[[], Iterable[Any]]) -> None:
        self._collectors = collectors
        self._readings: dict[int, tuple[float, list[Metric]]] = {}  # id(collector) ->
        self.enabled = False  # set while the listener runs

    def metrics(self, collector: object) -> list[Metric] | None:
        """Its latest reading while fresh, else None (the caller collects it itself)."""
        reading = self._readings.get(id(collector))
        if not self.enabled or reading is None or monotonic() - reading[0] > MAX_AGE:
            return None
        return reading[1]

    def read(self) -> None:
        """Read every process collector now (a failure is left to the scrape, which reads
        it itself and reports it)."""
        readings = {}
        for collector in list(self._collectors()):
            if isinstance(collector, ProcessCollector):
                with contextlib.suppress(Exception):
                    readings[id(collector)] = (monotonic(), list(collector.collect()))
        self._readings = readings
