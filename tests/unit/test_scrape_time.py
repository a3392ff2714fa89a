"""Scrape-time sources and health checks: bounded, cached, never failing the scrape."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

import app_metrics
from app_metrics.domain import SourceOptions
from app_metrics.factory import MetricFactory
from app_metrics.health import HealthChecks, HealthResult

from .driver import call, isolated, request, scrape, value


def make(**options: object) -> tuple[FastAPI, app_metrics.Metrics]:
    app = FastAPI()
    metrics = isolated(app, **options)
    return app, metrics


def test_a_hanging_source_costs_one_timeout_and_leaves_the_scrape_200() -> None:
    app, metrics = make(source_timeout=0.2)

    async def hang() -> int:
        await asyncio.sleep(30)
        return 1

    metrics.sms.queue_length_from(hang)
    metrics.users.active_sessions_from(lambda: 3)
    start = time.monotonic()
    result = call(app, "/metrics")
    took = time.monotonic() - start
    assert result.status == 200 and took < 1.0, took
    text = result.body.decode()
    assert value(text, "sms_queue_length") is None  # unknown, so left out
    assert value(text, "active_sessions") == 3
    text = scrape(app)  # within ttl: cached, no second wait
    assert (
        value(text, "app_metrics_scrape_source_errors_total", source="sms_queue", reason="timeout")
        == 1
    )


def test_a_sources_error_counts_are_exposed_at_zero_before_its_first_failure() -> None:
    # an alert's increase() sees a counter's first failure only if the series was there before
    app, metrics = make()
    metrics.sms.queue_length_from(lambda: 4)
    text = scrape(app)
    errors = "app_metrics_scrape_source_errors_total"
    assert value(text, errors, source="sms_queue", reason="error") == 0
    assert value(text, errors, source="sms_queue", reason="timeout") == 0


def test_a_failing_source_is_counted_and_left_out() -> None:
    app, metrics = make()

    def broken() -> int:
        raise ConnectionError("redis down")

    metrics.sms.queue_length_from(broken)
    text = scrape(app)
    assert value(text, "sms_queue_length") is None
    assert (
        value(text, "app_metrics_scrape_source_errors_total", source="sms_queue", reason="error")
        == 1
    )


def test_sources_are_cached_for_their_ttl() -> None:
    app, metrics = make(source_ttl=60)
    calls = []

    def length() -> int:
        calls.append(1)
        return len(calls)

    metrics.sms.queue_length_from(length)
    for _ in range(5):
        text = scrape(app)
    assert len(calls) == 1
    assert value(text, "sms_queue_length") == 1


def test_sources_refresh_after_their_ttl() -> None:
    app, metrics = make(source_ttl=0)
    calls = []
    metrics.sms.queue_length_from(lambda: calls.append(1) or len(calls))
    scrape(app)
    assert value(scrape(app), "sms_queue_length") == 2


def test_concurrent_scrapes_share_one_refresh() -> None:
    app, metrics = make(source_ttl=60)
    calls = []

    async def slow() -> int:
        calls.append(1)
        await asyncio.sleep(0.1)
        return 9

    metrics.sms.queue_length_from(slow)

    async def scrapes() -> list[int]:
        results = await asyncio.gather(*(request(app, "/metrics") for _ in range(5)))
        return [r.status for r in results]

    assert asyncio.run(scrapes()) == [200] * 5
    assert len(calls) == 1


def test_health_checks_report_status_latency_and_failures() -> None:
    app, metrics = make()
    state = {"redis": True}

    async def database() -> None:
        await asyncio.sleep(0.01)

    async def redis() -> bool:
        return state["redis"]

    async def sms_provider() -> None:
        raise ConnectionError("no route to provider")

    async def stuck() -> None:
        await asyncio.sleep(30)

    metrics.health.add("database", database)
    metrics.health.add("redis", redis, ttl=0)
    metrics.health.add("sms_provider", sms_provider)
    metrics.health.add("stuck", stuck, timeout=0.1)
    text = scrape(app)
    assert value(text, "health_check_status", check="database") == 1
    assert value(text, "database_health_status") == 1
    took = value(text, "database_response_time_seconds")
    assert took is not None
    assert 0.01 <= took < 1
    assert value(text, "health_check_status", check="redis") == 1
    assert value(text, "health_check_status", check="sms_provider") == 0
    assert value(text, "health_check_status", check="stuck") == 0
    assert value(text, "health_check_failures_total", check="sms_provider", reason="error") == 1
    assert value(text, "health_check_failures_total", check="stuck", reason="timeout") == 1
    state["redis"] = False
    text = scrape(app)
    assert value(text, "health_check_status", check="redis") == 0
    assert value(text, "health_check_failures_total", check="redis", reason="unhealthy") == 1
    latest = metrics.health.latest()
    assert latest["stuck"].healthy is False
    assert "timed out" in (latest["stuck"].error or "")
    assert [r.check for r in metrics.health.history].count("redis") == 2


def test_failed_database_check_reports_zero_and_no_response_time() -> None:
    app, metrics = make()

    async def database() -> None:
        raise OSError("connection refused")

    metrics.health.add("database", database)
    text = scrape(app)
    assert value(text, "database_health_status") == 0
    assert value(text, "database_response_time_seconds") is None


def test_health_history_is_bounded() -> None:
    app, metrics = make()

    async def ok() -> None:
        return None

    metrics.health.add("database", ok, ttl=0)
    for _ in range(150):
        scrape(app)
    assert len(metrics.health.history) == 100


def test_a_hung_sync_reader_holds_one_thread_and_then_counts_as_a_timeout() -> None:
    app, metrics = make(source_timeout=0.1, source_ttl=0)
    release = threading.Event()
    lock = threading.Lock()
    state = {"entered": 0, "running": 0, "most": 0}
    threads: list[str] = []

    def hung() -> int:
        with lock:
            state["entered"] += 1
            state["running"] += 1
            state["most"] = max(state["most"], state["running"])
        threads.append(threading.current_thread().name)
        try:
            release.wait(10)
            return 5
        finally:
            with lock:
                state["running"] -= 1

    metrics.sms.queue_length_from(hung)

    async def scrapes() -> list[tuple[int, float, str]]:
        out = []
        try:
            for _ in range(10):
                start = time.monotonic()
                result = await request(app, "/metrics")
                out.append((result.status, time.monotonic() - start, result.body.decode()))
        finally:
            release.set()  # never leave the reader's thread blocked
        return out

    results = asyncio.run(scrapes())
    assert state["most"] == 1 and state["entered"] == 1, state
    assert all(status == 200 and took < 0.5 for status, took, _ in results), results
    assert all(name.startswith("app_metrics-source") for name in threads), threads
    text = results[-1][2]
    assert value(text, "sms_queue_length") is None
    errors = "app_metrics_scrape_source_errors_total"
    assert value(text, errors, source="sms_queue", reason="timeout") == 10
    deadline = time.monotonic() + 5
    while state["running"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert value(scrape(app), "sms_queue_length") == 5  # the stuck call returned: called again


def test_label_values_past_the_cap_are_summed_into_overflow() -> None:
    app, metrics = make(label_cap=2)
    metrics.tasks.queue_lengths_from(lambda: {"c": 10, "d": 20, "e": 30, "f": 40})
    text = scrape(app)
    assert value(text, "task_queue_length", queue="c") == 10
    assert value(text, "task_queue_length", queue="d") == 20
    assert value(text, "task_queue_length", queue="<overflow>") == 70  # e + f


def test_sync_health_checks_report_status_and_errors() -> None:
    app, metrics = make()

    def redis() -> bool:
        return True

    def sms_provider() -> None:
        raise ConnectionError("no route to provider")

    metrics.health.add("redis", redis)
    metrics.health.add("sms_provider", sms_provider)
    text = scrape(app)
    assert value(text, "health_check_status", check="redis") == 1
    assert value(text, "health_check_status", check="sms_provider") == 0
    assert value(text, "health_check_failures_total", check="sms_provider", reason="error") == 1
    assert value(text, "health_check_failures_total", check="redis", reason="error") == 0
    assert "ConnectionError" in (metrics.health.latest()["sms_provider"].error or "")


@pytest.mark.parametrize(("options", "calls"), [(SourceOptions(ttl=0), 3), (SourceOptions(), 1)])
def test_health_check_ttl_defaults_to_the_source_options(
    options: SourceOptions, calls: int
) -> None:
    app, metrics = make()
    failures = MetricFactory(CollectorRegistry(), {}).counter(
        "health_check_failures_total", "Failed checks.", ("check", "reason")
    )
    checks = HealthChecks(metrics.values, failures, options=options)
    seen = []
    checks.add("queue", lambda: seen.append(1))
    for _ in range(3):
        text = scrape(app)
    assert len(seen) == calls
    assert value(text, "health_check_status", check="queue") == 1


def test_instrument_source_options_apply_to_health_checks() -> None:
    app, metrics = make(source_ttl=0)
    seen: list[int] = []
    metrics.health.add("queue", lambda: seen.append(1))  # a sync check
    for _ in range(3):
        text = scrape(app)
    assert len(seen) == 3
    assert value(text, "health_check_status", check="queue") == 1


def test_running_a_check_on_demand_updates_what_the_next_scrape_serves() -> None:
    app, metrics = make(source_ttl=60, health_history=3)
    state = {"up": True}

    async def database() -> bool:
        return state["up"]

    metrics.health.add("database", database)
    assert value(scrape(app), "database_health_status") == 1
    state["up"] = False
    result = asyncio.run(metrics.health.run("database"))
    assert result.healthy is False
    text = scrape(app)  # within the ttl: no new scrape-time run, but the on-demand result
    assert value(text, "database_health_status") == 0
    assert value(text, "health_check_status", check="database") == 0
    assert metrics.health.names() == ["database"]
    for _ in range(5):
        asyncio.run(metrics.health.run("database"))
    assert len(metrics.health.history) == 3


def test_shared_health_results_run_a_check_once_per_ttl_whatever_the_callers() -> None:
    app, metrics = make()
    calls: list[int] = []

    async def database() -> None:
        calls.append(1)
        await asyncio.sleep(0.05)

    metrics.health.add("database", database, ttl=60)

    async def burst() -> tuple[list[HealthResult], HealthResult]:
        results = await asyncio.gather(*(metrics.health.shared("database") for _ in range(50)))
        return results, await metrics.health.shared("database")

    results, later = asyncio.run(burst())
    assert len(calls) == 1
    assert all(r is results[0] for r in results) and later is results[0]
    assert value(scrape(app), "database_health_status") == 1
    assert len(calls) == 1  # the scrape served the shared result too


def test_concurrent_callers_share_one_run_even_without_a_ttl() -> None:
    _, metrics = make()
    calls: list[int] = []

    async def redis() -> None:
        calls.append(1)
        await asyncio.sleep(0.05)

    metrics.health.add("redis", redis, ttl=0)

    async def two_bursts() -> None:
        for _ in range(2):
            await asyncio.gather(*(metrics.health.shared("redis") for _ in range(20)))

    asyncio.run(two_bursts())
    assert len(calls) == 2


def test_from_another_thread_a_blocked_loop_serves_the_cache_then_times_the_source_out() -> None:
    """The listener's path: the loop cannot run the refresh, so the waiting thread serves the
    cached value, and once the source has waited its timeout leaves it out and counts it,
    while the loop is still blocked; after the block the source is read again."""
    from app_metrics.scrape import ScrapeTimeValues

    errors: list[tuple[str, str]] = []
    values = ScrapeTimeValues({}, 10, lambda *a: None, lambda s, r: errors.append((s, r)))
    values.gauge("g", "a gauge")
    reads = iter(range(1, 100))
    values.source("src", lambda: {"g": next(reads)}, ["g"], timeout=0.2, ttl=0)

    def g() -> float | None:
        family = next(f for f in values.collect() if f.name == "g")
        return family.samples[0].value if family.samples else None

    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever)
    runner.start()
    blocked, release = threading.Event(), threading.Event()
    try:
        values.refresh_from(loop, 5.0)
        assert g() == 1.0
        loop.call_soon_threadsafe(lambda: (blocked.set(), release.wait(10)))
        assert blocked.wait(5)
        values.refresh_from(loop, 0.01)  # the loop cannot run it: the cache
        assert g() == 1.0 and errors == []
        deadline = time.monotonic() + 5
        while not errors and time.monotonic() < deadline:
            time.sleep(0.02)
            values.refresh_from(loop, 0.01)
        assert not release.is_set()  # still blocked when the timeout was counted
        assert errors == [("src", "timeout")] and g() is None
    finally:
        release.set()
    try:
        deadline = time.monotonic() + 5
        while g() is None and time.monotonic() < deadline:
            values.refresh_from(loop, 0.5)
        assert (g() or 0) >= 2 and errors == [("src", "timeout")]  # counted once
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5)
        loop.close()


def test_without_a_loop_refresh_from_serves_the_cache_as_it_is() -> None:
    from app_metrics.scrape import ScrapeTimeValues

    values = ScrapeTimeValues({}, 10, lambda *a: None, lambda s, r: None)
    values.gauge("g", "a gauge")
    values.source("src", lambda: {"g": 1}, ["g"], ttl=0)
    values.refresh_from(None, 0.01)
    assert [f.samples for f in values.collect()] == [[]]
