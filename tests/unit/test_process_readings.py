"""Process metrics read after a scrape's answer (app_metrics/process.py): while the metrics
listener runs, a scrape serves the reading taken after the previous answer instead of reading
/proc before its own; without the listener, or with no fresh reading, the scrape reads them
as before, and a failure is reported as before."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_client.process_collector import ProcessCollector

from app_metrics import process as process_module

from .driver import isolated, samples
from .test_listener import scrape, serving

SLOW = 0.4  # seconds each collect takes


class Slow(ProcessCollector):
    """A ProcessCollector whose collect takes SLOW seconds, counted (and can be made to fail)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.collects = 0
        self.fail = False
        super().__init__(registry=registry)

    def collect(self) -> Any:
        time.sleep(SLOW)
        self.collects += 1
        if self.fail:
            raise OSError("no /proc here")
        return super().collect()


def timed_scrape(port: int) -> tuple[float, dict[Any, float]]:
    begin = time.monotonic()
    code, _, body = scrape(port)  # Connection: close, read until the listener closes
    assert code == 200
    return time.monotonic() - begin, samples(body.decode())


def collects_reach(collector: Slow, count: int) -> None:
    deadline = time.monotonic() + 10
    while collector.collects < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert collector.collects >= count


CPU = ("process_cpu_seconds_total", frozenset())


def test_with_the_listener_a_scrape_serves_the_reading_taken_after_the_previous_answer() -> None:
    app = FastAPI()
    registry = CollectorRegistry()
    collector = Slow(registry)
    metrics = isolated(app, metrics_port=0, registry=registry)
    with serving(app):
        port = metrics.listener.port
        took, found = timed_scrape(port)  # no reading yet: read in the scrape
        assert took >= SLOW and CPU in found
        collects_reach(collector, 2)  # then once more, after the answer
        for count in (3, 4):
            took, found = timed_scrape(port)
            assert took < SLOW and CPU in found, f"{took:.2f} s"
            collects_reach(collector, count)
    assert not metrics.process.enabled


def test_without_the_listener_each_scrape_reads_the_process_metrics_itself() -> None:
    app = FastAPI()
    registry = CollectorRegistry()
    collector = Slow(registry)
    metrics = isolated(app, registry=registry)
    for _ in range(2):
        metrics.render()
    assert collector.collects == 2 and not metrics.process.enabled


def test_a_stale_reading_is_read_again_in_the_scrape(monkeypatch: pytest.MonkeyPatch) -> None:
    app = FastAPI()
    registry = CollectorRegistry()
    collector = Slow(registry)
    metrics = isolated(app, metrics_port=0, registry=registry)
    monkeypatch.setattr(process_module, "MAX_AGE", -1.0)  # every reading stale
    with serving(app):
        for count in (2, 4):
            took, _ = timed_scrape(metrics.listener.port)
            assert took >= SLOW
            collects_reach(collector, count)


def test_a_failed_reading_leaves_the_scrape_to_read_and_report_it() -> None:
    app = FastAPI()
    registry = CollectorRegistry()
    collector = Slow(registry)
    collector.fail = True
    metrics = isolated(app, metrics_port=0, registry=registry)
    errors = ("app_metrics_collector_errors_total", frozenset({("collector", "Slow")}))
    with serving(app):
        port = metrics.listener.port
        _, found = timed_scrape(port)
        assert CPU not in found and found[errors] == 1.0
        collects_reach(collector, 2)  # the failed reading after the answer: none kept
        _, found = timed_scrape(port)
        assert CPU not in found and found[errors] == 2.0
        collects_reach(collector, 4)
        collector.fail = False
        _, found = timed_scrape(port)
        assert CPU in found
