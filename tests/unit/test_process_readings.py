"""Process metrics read beside the scrape (app_metrics/process.py): while the metrics listener
runs, scrapes serve the reader's latest reading instead of reading /proc themselves; without
the listener, or once the reading is stale or failed, the scrape reads them as before."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_client.process_collector import ProcessCollector

from app_metrics import process as process_module
from app_metrics.process import ProcessReadings

from .driver import isolated, samples
from .test_listener import scrape, serving


class Counting(ProcessCollector):
    """A ProcessCollector that counts its collects (and can be made to fail)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.collects = 0
        self.fail = False
        super().__init__(registry=registry)

    def collect(self) -> Any:
        self.collects += 1
        if self.fail:
            raise OSError("no /proc here")
        return super().collect()


def cpu(body: bytes) -> float:
    return samples(body.decode())[("process_cpu_seconds_total", frozenset())]


def test_with_the_listener_a_scrape_serves_the_reading_and_reads_nothing_itself() -> None:
    app = FastAPI()
    registry = CollectorRegistry()
    collector = Counting(registry)
    metrics = isolated(app, metrics_port=0, registry=registry)
    with serving(app):
        assert metrics.process.running
        read = collector.collects  # the reading taken at the start
        assert read >= 1
        for _ in range(5):
            code, _, body = scrape(metrics.listener.port)
            assert code == 200 and cpu(body) >= 0
        assert collector.collects - read <= 1  # the reader's own, at most (1 s apart)
    assert not metrics.process.running


def test_the_reader_reads_again_every_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = CollectorRegistry()
    collector = Counting(registry)
    readings = ProcessReadings(lambda: list(registry._collector_to_names), interval=0.05)
    readings.start()
    try:
        deadline = time.monotonic() + 5
        while collector.collects < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert collector.collects >= 4
        assert readings.metrics(collector) is not None
        monkeypatch.setattr(process_module, "MAX_AGE", -1.0)  # every reading stale
        assert readings.metrics(collector) is None
    finally:
        readings.stop()
    monkeypatch.setattr(process_module, "MAX_AGE", 3.0)
    assert readings.metrics(collector) is None  # stopped: the scrape reads it itself


def test_without_the_listener_each_scrape_reads_the_process_metrics_itself() -> None:
    app = FastAPI()
    registry = CollectorRegistry()
    collector = Counting(registry)
    metrics = isolated(app, registry=registry)
    for _ in range(3):
        metrics.render()
    assert collector.collects == 3 and not metrics.process.running


def test_a_failed_reading_leaves_the_scrape_to_read_and_report_it() -> None:
    app = FastAPI()
    registry = CollectorRegistry()
    collector = Counting(registry)
    collector.fail = True
    metrics = isolated(app, metrics_port=0, registry=registry)
    with serving(app):
        code, _, body = scrape(metrics.listener.port)
        found = samples(body.decode())
        assert code == 200 and ("process_cpu_seconds_total", frozenset()) not in found
        errors = ("app_metrics_collector_errors_total", frozenset({("collector", "Counting")}))
        assert found[errors] == 1.0
        collector.fail = False  # no reading yet: the next scrape reads it itself
        body = scrape(metrics.listener.port)[2]
        assert ("process_cpu_seconds_total", frozenset()) in samples(body.decode())
