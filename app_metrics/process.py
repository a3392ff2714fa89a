"""Process metrics read beside the scrape, not in it, while the metrics listener runs.

prometheus_client's ``ProcessCollector`` reads ``/proc`` (stat, limits, the fd folder) at each
collect: a dozen system calls, each giving the GIL up. With the event loop saturated, each
takes the GIL back only once the loop's thread lets go of it (the switch interval, 5 ms), so
they were 14 ms of a listener's 20 ms answer (``bench/listener.py``). ``ProcessReadings``
reads them on a thread of its own every ``INTERVAL`` seconds; a scrape serves the latest
reading while it is at most ``MAX_AGE`` seconds old, and reads them itself otherwise (not
started, or the thread held up), as before.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from time import monotonic
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.process_collector import ProcessCollector

log = logging.getLogger("app_metrics")

INTERVAL = 1.0
MAX_AGE = 3.0


class ProcessReadings:
    """The latest reading of each ``ProcessCollector`` among ``collectors()``."""

    def __init__(self, collectors: Callable[[], Iterable[Any]], interval: float = INTERVAL) -> None:
        self._collectors = collectors
        self.interval = interval
        self._readings: dict[int, tuple[float, list[Metric]]] = {}  # id(collector) ->
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self.read()
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(self._stopping,), name="app_metrics-process", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._readings = {}

    def metrics(self, collector: object) -> list[Metric] | None:
        """Its latest reading while fresh, else None (the caller collects it itself)."""
        reading = self._readings.get(id(collector))
        if reading is None or monotonic() - reading[0] > MAX_AGE or not self.running:
            return None
        return reading[1]

    def read(self) -> None:
        readings = {}
        for collector in list(self._collectors()):
            if isinstance(collector, ProcessCollector):
                # a failure is left to the scrape, which reads it itself and reports it
                with contextlib.suppress(Exception):
                    readings[id(collector)] = (monotonic(), list(collector.collect()))
        self._readings = readings

    def _run(self, stopping: threading.Event) -> None:
        while not stopping.wait(self.interval):
            try:
                self.read()
            except Exception:
                log.exception("reading the process metrics failed")
