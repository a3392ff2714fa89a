"""One stack for the whole integration suite (`make test-integration`): started once, stopped
by PID (native) or `compose down` (Compose) at the end, whatever happens. Figures measured by
the tests are printed at the end of the run."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from .runtimes import Stack, start_stack

FIGURES: list[str] = []


# what the traffic mix must have produced before the checks run: every kind of sample, 5xx
# included (they come from the simulated providers' failure rates, a few per thousand)
WARM_UP = ['http_requests_total{status=~"5.."}', 'sms_messages_total{status="success"}',
           'task_executions_total{outcome="success"}', 'phone_verifications_total',
           'oauth_errors_total']  # fmt: skip
WARM_UP_TIMEOUT = 120.0


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    begin = time.monotonic()
    running = start_stack()
    FIGURES.append(f"{running.runtime} stack up, every target up: {time.monotonic() - begin:.1f} s")
    if getattr(running, "healthy_after", None) is not None:
        FIGURES.append(
            f"{running.runtime}: every container healthy after {running.healthy_after:.1f} s"
        )
    try:
        warm_up(running)
        yield running
    finally:
        running.close()


@contextlib.contextmanager
def traffic(stack: Stack, rate: float = 40.0, duration: float = 900.0) -> Iterator[None]:
    """The traffic generator at ``rate`` requests/s beside the stack's own (5/s), for at most
    ``duration`` s or until the block ends. The 5xx come from the simulated OAuth providers'
    failures: about 1.5 a minute at the stack's own rate, about 12 at 40/s more."""
    generator = subprocess.Popen(
        [sys.executable, "-m", "assistant.traffic", "--url", stack.api, "--rate", f"{rate:g}",
         "--duration", f"{duration:g}", "--token-file", str(stack.api_token_file),
         "--progress", "3600"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
    finally:
        generator.terminate()
        generator.wait(30)


def warm_up(stack: Stack) -> None:
    """Extra traffic until Prometheus has every sample kind of WARM_UP with a non-zero value
    (bounded)."""
    with traffic(stack, duration=WARM_UP_TIMEOUT):
        until(lambda: all(query(stack, f"sum({s}) > 0") for s in WARM_UP), WARM_UP_TIMEOUT, 1.0,
              f"the traffic mix produced {WARM_UP}")  # fmt: skip


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("stack figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


def get(url: str, **params: str) -> Any:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(url + query, timeout=10) as response:
        return json.loads(response.read())


def query(stack: Stack, expr: str, **params: str) -> list[dict[str, Any]]:
    """An instant query's result vector."""
    body = get(f"{stack.prometheus}/api/v1/query", query=expr, **params)
    assert body["status"] == "success", body
    return body["data"]["result"]  # type: ignore[no-any-return]


def until(check: Any, timeout: float, every: float = 0.5, what: str = "") -> Any:
    """Poll ``check()`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:g} s: {what}", pytrace=False)
        time.sleep(every)
