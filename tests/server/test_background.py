"""Background tasks run after the response: not latency, and the request is counted at once."""

from __future__ import annotations

import time

import pytest

from .conftest import StartServer, scrape

pytestmark = pytest.mark.server

TASK_SECONDS = 0.5
ROUTE = "/background"


def test_background_task_time_is_not_request_latency(start_server: StartServer) -> None:
    server = start_server()
    started = time.perf_counter()
    response = server.get(f"{ROUTE}?seconds={TASK_SECONDS}")
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    assert elapsed < TASK_SECONDS, "the response waited for its background task"

    during = scrape(server)
    # The task was still sleeping when that scrape was answered.
    assert server.get(f"{ROUTE}/done").json() == {"done": 0}
    assert during.total("http_requests_total", endpoint=ROUTE, status="200") == 1
    assert during.total("http_request_duration_seconds_count", endpoint=ROUTE) == 1
    latency = during.total("http_request_duration_seconds_sum", endpoint=ROUTE)
    assert latency < TASK_SECONDS / 2, latency
    assert during.total("http_requests_in_progress") == 0

    # After the task has finished: still one request, with the same latency.
    deadline = time.monotonic() + 5.0
    for _ in range(100):
        if server.get(f"{ROUTE}/done").json() == {"done": 1} or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert server.get(f"{ROUTE}/done").json() == {"done": 1}
    after = scrape(server)
    assert after.total("http_requests_total", endpoint=ROUTE) == 1
    assert after.total("http_request_duration_seconds_sum", endpoint=ROUTE) == latency
