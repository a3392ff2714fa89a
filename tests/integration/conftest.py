"""One stack for the whole integration suite (`make test-integration`): started once, stopped
by PID (native) or `compose down` (Compose) at the end, whatever happens. Figures measured by
the tests are printed at the end of the run."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from .runtimes import Stack, start_stack

FIGURES: list[str] = []


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    begin = time.monotonic()
    running = start_stack()
    FIGURES.append(f"{running.runtime} stack up, every target up: {time.monotonic() - begin:.1f} s")
    try:
        yield running
    finally:
        running.close()


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
