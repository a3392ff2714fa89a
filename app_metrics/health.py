"""Health checks exported as metrics.

Each registered check (sync or async) gives ``health_check_status{check}`` (1 healthy,
0 not) and ``health_check_duration_seconds{check}``; the check named
``database`` also gives the specification's ``database_health_status`` and
``database_response_time_seconds``. A check is healthy when it returns without
raising and does not return ``False``. Failures and timeouts are logged and
counted in ``health_check_failures_total{check,reason}``, never raised.
Checks are called like scrape-time readers (``ScrapeTimeValues.call``): a sync
one on the module's own threads, and not again while a previous call still runs.

``shared(name)`` is what request handlers (``/health`` endpoints) should use: the latest
result while it is younger than the check's ``ttl``, else one run that every concurrent
caller (and the scrape) awaits, so a flood of requests runs each check at most once per
``ttl`` instead of once per request.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from time import monotonic, perf_counter, time
from typing import Any

from .labels import Family
from .scrape import ScrapeTimeValues, SourceOptions

log = logging.getLogger("app_metrics")

Check = Callable[[], Any]  # sync or async

STATUS = "health_check_status"
DURATION = "health_check_duration_seconds"
DATABASE_STATUS = "database_health_status"
DATABASE_RESPONSE = "database_response_time_seconds"


@dataclass(frozen=True)
class HealthResult:
    check: str
    healthy: bool
    duration_seconds: float
    checked_at: float  # unix time
    error: str | None = None


class HealthChecks:
    """Registered checks, their latest results and a bounded history."""

    def __init__(
        self,
        values: ScrapeTimeValues,
        failures: Family,
        history_size: int = 100,
        options: SourceOptions | None = None,
    ) -> None:
        self._values = values
        self._options = options or SourceOptions()
        self._failures = failures
        self._latest: dict[str, HealthResult] = {}
        self._fresh_until: dict[str, float] = {}  # monotonic: the latest result is shared
        self._running: dict[str, asyncio.Task[HealthResult]] = {}
        self._checks: dict[str, tuple[Check, float, float]] = {}  # check, timeout, ttl
        self.history: deque[HealthResult] = deque(maxlen=history_size)
        values.gauge(
            STATUS, "1 when the named health check passed at the last scrape, else 0.", ("check",)
        )
        values.gauge(DURATION, "Duration of the named health check at the last scrape.", ("check",))
        values.gauge(DATABASE_STATUS, "1 when the database answered its health query, else 0.")
        values.gauge(DATABASE_RESPONSE, "Time the database took to answer its health query.")

    def add(
        self, name: str, check: Check, *, timeout: float | None = None, ttl: float | None = None
    ) -> None:
        """Register ``check`` under ``name``; it runs at scrape time, at most once per ``ttl``.

        ``timeout`` and ``ttl`` default to the source options (``source_timeout``/``source_ttl``).
        """
        timeout = self._options.timeout if timeout is None else timeout
        ttl = self._options.ttl if ttl is None else ttl
        gauges = [STATUS, DURATION]
        if name == "database":
            gauges += [DATABASE_STATUS, DATABASE_RESPONSE]
        for reason in ("error", "timeout", "unhealthy"):
            self._failures.labels(name, reason)  # zero-initialised
        self._checks[name] = (check, timeout, ttl)

        async def scrape() -> dict[str, Any]:
            return _gauges(await self.shared(name))

        # the check enforces its own timeout; the source's is a backstop
        self._values.source(f"health:{name}", scrape, gauges, timeout=timeout + 1.0, ttl=ttl)

    def names(self) -> list[str]:
        """The registered checks, in registration order."""
        return list(self._checks)

    async def shared(self, name: str) -> HealthResult:
        """The latest result of a registered check while it is younger than the check's
        ``ttl``; else a run of it, shared with every caller that asks meanwhile."""
        latest = self._latest.get(name)
        if latest is not None and monotonic() < self._fresh_until.get(name, 0.0):
            return latest
        task = self._running.get(name)
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            task = self._running[name] = asyncio.ensure_future(self.run(name))
        return await asyncio.shield(task)  # a caller that goes away leaves the run to the rest

    async def run(self, name: str) -> HealthResult:
        """Run a registered check now: its result goes to the history and to the gauges the
        next scrape serves, so both tell the same story."""
        check, timeout, _ = self._checks[name]
        result = await self.run_one(name, check, timeout)
        self._values.update(f"health:{name}", _gauges(result))
        return result

    async def run_one(self, name: str, check: Check, timeout: float) -> HealthResult:
        start = perf_counter()
        error: str | None = None
        try:
            called = self._values.call(f"health:{name}", check)
            healthy = await asyncio.wait_for(called, timeout) is not False
            if not healthy:
                error, reason = "check returned False", "unhealthy"
        except TimeoutError as exc:  # or SourceBusy: still running from an earlier scrape
            healthy, error, reason = False, str(exc) or f"timed out after {timeout:g}s", "timeout"
        except Exception as exc:
            healthy, error, reason = False, f"{type(exc).__name__}: {exc}", "error"
        duration = perf_counter() - start
        if not healthy:
            log.warning("health check %s failed: %s", name, error)
            self._failures.labels(name, reason).inc()
        result = HealthResult(name, healthy, duration, time(), error)
        self._latest[name] = result
        ttl = self._checks[name][2] if name in self._checks else 0.0
        self._fresh_until[name] = monotonic() + ttl
        self.history.append(result)
        return result

    def latest(self) -> dict[str, HealthResult]:
        """The most recent result of each check (checks run at scrape time)."""
        return dict(self._latest)


def _gauges(result: HealthResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        STATUS: {result.check: float(result.healthy)},
        DURATION: {result.check: result.duration_seconds},
    }
    if result.check == "database":
        out[DATABASE_STATUS] = float(result.healthy)
        if result.healthy:
            out[DATABASE_RESPONSE] = result.duration_seconds
    return out
