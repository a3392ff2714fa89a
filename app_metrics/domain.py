"""Typed helpers for the application's domains: SMS, OAuth, tasks, database (users:
``users.py``).

Metric names follow the specification. Closed label sets (statuses, outcomes)
are checked: an unknown value is counted as ``<other>``. Open ones (providers,
task types, queues, error types) go through the per-label cap. Values that only
exist outside the process (queue lengths, pool usage, active integrations,
sessions, user counts) are scrape-time gauges fed by a source function.

Recording never raises into the caller: a cost or duration that is not a finite
number >= 0 is logged and skipped (it would fail or poison the series forever),
and the rest of the call is still recorded.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from time import perf_counter
from types import TracebackType
from typing import Any, Literal, NamedTuple

from .factory import MetricFactory
from .labels import OTHER, Family
from .scrape import (
    ScrapeTimeValues,
    SourceOptions,
    Values,
)  # SourceOptions: also imported from here

log = logging.getLogger("app_metrics")

SMS_STATUSES = ("success", "failure")
REFRESH_STATUSES = ("success", "failure")
TASK_OUTCOMES = ("success", "failure", "timeout")
# why a queue entry was given up: unreadable, or taken more times than allowed
DEAD_LETTER_REASONS = ("bad_entry", "retries_exhausted")

SMSStatus = Literal["success", "failure"]
TaskOutcome = Literal["success", "failure", "timeout"]
DeadLetterReason = Literal["bad_entry", "retries_exhausted"]

# Provider APIs answer in tens of milliseconds to seconds; 30 s is a timeout.
SMS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
OAUTH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Background jobs range from milliseconds to minutes.
TASK_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)

Number = int | float
Reader = Callable[[], Any | Awaitable[Any]]


class PoolStats(NamedTuple):
    size: int  # connections the pool may hold (pool size plus allowed overflow)
    checked_out: int  # connections in use


def _closed(value: str, allowed: Sequence[str]) -> str:
    return value if value in allowed else OTHER


def _amount(what: str, value: object) -> float | None:
    """``value`` as a float when it is a finite number >= 0, else None (logged)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if math.isfinite(number) and number >= 0:
        return number
    log.warning("app_metrics: ignoring %s %r (not a finite number >= 0)", what, value)
    return None


def _observe(child: Any, what: str, seconds: object) -> None:
    if (valid := _amount(what, seconds)) is not None:
        child.observe(valid)


def _with_known(known: Iterable[str], counts: Mapping[Any, float]) -> dict[Any, float]:
    """``counts`` with every known label value present (0 when the reader left it out)."""
    out: dict[Any, float] = dict.fromkeys(known, 0.0)
    out.update(counts)
    return out


class _Timer:
    """Times a block (sync or async); ``on_exit(seconds, exc)`` records it."""

    def __init__(self, on_exit: Callable[[float, BaseException | None], None]) -> None:
        self._on_exit = on_exit
        self._start = 0.0

    def __enter__(self) -> _Timer:
        self._start = perf_counter()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._on_exit(perf_counter() - self._start, exc)

    async def __aenter__(self) -> _Timer:
        return self.__enter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(kind, exc, tb)


class _Domain:
    def __init__(self, values: ScrapeTimeValues, options: SourceOptions) -> None:
        self._values = values
        self._options = options

    def _from(
        self,
        source: str,
        gauges: Sequence[str],
        reader: Reader,
        shape: Callable[[Any], Values] | None = None,
    ) -> None:
        """Feed ``gauges`` at scrape time from ``reader()`` (sync or async), called through
        ``ScrapeTimeValues.call``; ``shape`` turns its result into ``{gauge: value}``
        (by default the result is the one number of the single gauge)."""

        async def read() -> Values:
            raw = await self._values.call(source, reader)
            return shape(raw) if shape else {gauges[0]: float(raw)}

        opts = self._options
        self._values.source(source, read, gauges, timeout=opts.timeout, ttl=opts.ttl)


class SMSMetrics(_Domain):
    def __init__(
        self,
        factory: MetricFactory,
        values: ScrapeTimeValues,
        options: SourceOptions,
        providers: Sequence[str],
    ) -> None:
        super().__init__(values, options)
        self.messages: Family = factory.counter(
            "sms_messages_total",
            "SMS messages processed, by outcome and provider.",
            ("status", "provider"),
        )
        self.duration: Family = factory.histogram(
            "sms_processing_duration_seconds",
            "Time to hand one SMS to its provider, by provider.",
            ("provider",),
            SMS_BUCKETS,
        )
        self.cost: Family = factory.counter(
            "sms_cost_total",
            "Money spent on SMS, in the providers' billing currency.",
            ("provider",),
        )
        self.dead_letters: Family = factory.counter(
            "sms_dead_letters_total",
            "SMS queue entries given up (never delivered), by reason.",
            ("reason",),
        )
        values.gauge("sms_queue_length", "SMS messages waiting in the queue.")
        values.gauge(
            "sms_queue_oldest_age_seconds",
            "Seconds the SMS taken next has waited in the queue (0 when none waits).",
        )
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason)
        for provider in providers:
            for status in SMS_STATUSES:
                self.messages.labels(status, provider)
            self.duration.labels(provider)
            self.cost.labels(provider)

    def message(
        self,
        provider: str,
        status: SMSStatus,
        *,
        cost: Number = 0.0,
        duration_seconds: float | None = None,
    ) -> None:
        """Record one processed message: its outcome, its cost and how long the provider took."""
        self.messages.labels(_closed(status, SMS_STATUSES), provider).inc()
        if cost and (amount := _amount("SMS cost", cost)):
            self.cost.labels(provider).inc(amount)
        if duration_seconds is not None:
            _observe(self.duration.labels(provider), "SMS duration", duration_seconds)

    def dead_letter(self, reason: DeadLetterReason) -> None:
        """Count one queue entry given up: unreadable, or its retries exhausted."""
        self.dead_letters.labels(_closed(reason, DEAD_LETTER_REASONS)).inc()

    def queue_length_from(self, reader: Reader) -> None:
        """``reader()`` (sync or async) returns the number of queued messages."""
        self._from("sms_queue", ["sms_queue_length"], reader)

    def queue_age_from(self, reader: Reader) -> None:
        """``reader()`` returns the seconds the message taken next has waited."""
        self._from("sms_queue_age", ["sms_queue_oldest_age_seconds"], reader)


class OAuthMetrics(_Domain):
    def __init__(
        self,
        factory: MetricFactory,
        values: ScrapeTimeValues,
        options: SourceOptions,
        providers: Sequence[str],
    ) -> None:
        super().__init__(values, options)
        self.refreshes: Family = factory.counter(
            "oauth_token_refresh_total",
            "OAuth token refreshes, by provider and outcome.",
            ("provider", "status"),
        )
        self.errors: Family = factory.counter(
            "oauth_errors_total",
            "OAuth errors, by provider and error type.",
            ("provider", "error_type"),
        )
        self.duration: Family = factory.histogram(
            "oauth_operation_duration_seconds",
            "Duration of OAuth operations (connect, refresh, revoke, ...), by provider.",
            ("provider", "operation"),
            OAUTH_BUCKETS,
        )
        values.gauge(
            "oauth_integrations_active", "Active OAuth integrations, by provider.", ("provider",)
        )
        values.gauge("oauth_connected_users", "Users with at least one active OAuth integration.")
        self._providers = tuple(providers)
        for provider in providers:
            for status in REFRESH_STATUSES:
                self.refreshes.labels(provider, status)

    def token_refresh(self, provider: str, success: bool) -> None:
        self.refreshes.labels(provider, "success" if success else "failure").inc()

    def error(self, provider: str, error_type: str) -> None:
        self.errors.labels(provider, error_type).inc()

    def observe_operation(self, provider: str, operation: str, seconds: float) -> None:
        if (valid := _amount("OAuth operation duration", seconds)) is not None:
            self.duration.labels(provider, operation).observe(valid)

    def time_operation(self, provider: str, operation: str) -> _Timer:
        """``with``/``async with``: times the block as one operation, failed or not."""
        child = self.duration.labels(provider, operation)
        return _Timer(lambda seconds, exc: child.observe(seconds))

    def active_integrations_from(self, reader: Reader) -> None:
        """``reader()`` returns ``{provider: active integrations}``; known providers count 0."""
        gauge = "oauth_integrations_active"
        self._from(
            "oauth_integrations",
            [gauge],
            reader,
            lambda raw: {gauge: _with_known(self._providers, raw)},
        )

    def connected_users_from(self, reader: Reader) -> None:
        """``reader()`` returns the number of users with an active integration."""
        self._from("oauth_users", ["oauth_connected_users"], reader)


class TaskMetrics(_Domain):
    def __init__(
        self,
        factory: MetricFactory,
        values: ScrapeTimeValues,
        options: SourceOptions,
        task_types: Sequence[str],
        queues: Sequence[str],
    ) -> None:
        super().__init__(values, options)
        self.duration: Family = factory.histogram(
            "task_execution_duration_seconds",
            "Background task run time, by task type.",
            ("task_type",),
            TASK_BUCKETS,
        )
        self.executions: Family = factory.counter(
            "task_executions_total",
            "Background task runs, by task type and outcome.",
            ("task_type", "outcome"),
        )
        self.dead_letters: Family = factory.counter(
            "task_dead_letters_total",
            "Task queue entries given up (never run to an outcome), by queue and reason.",
            ("queue", "reason"),
        )
        values.gauge("task_queue_length", "Tasks waiting, by queue.", ("queue",))
        values.gauge(
            "task_queue_oldest_age_seconds",
            "Seconds the task taken next has waited, by queue (0 when none waits).",
            ("queue",),
        )
        self._queues = tuple(queues)
        for queue in queues:
            for reason in DEAD_LETTER_REASONS:
                self.dead_letters.labels(queue, reason)
        for task_type in task_types:
            self.duration.labels(task_type)
            for outcome in TASK_OUTCOMES:
                self.executions.labels(task_type, outcome)

    def executed(self, task_type: str, outcome: TaskOutcome, seconds: float) -> None:
        self.executions.labels(task_type, _closed(outcome, TASK_OUTCOMES)).inc()
        _observe(self.duration.labels(task_type), "task duration", seconds)

    def track(self, task_type: str) -> _Timer:
        """``with``/``async with``: success unless the block raises; a TimeoutError is a timeout."""

        def done(seconds: float, exc: BaseException | None) -> None:
            if exc is None:
                outcome = "success"
            elif isinstance(exc, TimeoutError):
                outcome = "timeout"
            else:
                outcome = "failure"
            self.executed(task_type, outcome, seconds)  # type: ignore[arg-type]

        return _Timer(done)

    def dead_letter(self, queue: str, reason: DeadLetterReason) -> None:
        """Count one entry of ``queue`` given up: unreadable, or its retries exhausted."""
        self.dead_letters.labels(queue, _closed(reason, DEAD_LETTER_REASONS)).inc()

    def queue_lengths_from(self, reader: Reader) -> None:
        """``reader()`` returns ``{queue: waiting tasks}``; known queues default to 0."""
        self._per_queue("task_queues", "task_queue_length", reader)

    def queue_ages_from(self, reader: Reader) -> None:
        """``reader()`` returns ``{queue: seconds the task taken next has waited}``; known
        queues default to 0."""
        self._per_queue("task_queue_ages", "task_queue_oldest_age_seconds", reader)

    def _per_queue(self, source: str, gauge: str, reader: Reader) -> None:
        self._from(source, [gauge], reader, lambda raw: {gauge: _with_known(self._queues, raw)})


class DatabaseMetrics(_Domain):
    GAUGES = (
        "database_connections_active",
        "database_connection_pool_size",
        "database_connection_pool_utilization",
    )

    def __init__(self, values: ScrapeTimeValues, options: SourceOptions) -> None:
        super().__init__(values, options)
        values.gauge(self.GAUGES[0], "Database connections checked out of the pool.")
        values.gauge(self.GAUGES[1], "Connections the pool may hold, overflow included.")
        values.gauge(
            self.GAUGES[2], "Checked-out connections over pool size (0 to 1), as the spec names it."
        )

    def pool_from(self, reader: Reader) -> None:
        """``reader()`` returns a ``PoolStats`` (or ``(size, checked_out)``) for the pool."""

        def shape(stats: tuple[int, int]) -> Values:
            size, checked_out = stats
            return {
                self.GAUGES[0]: float(checked_out),
                self.GAUGES[1]: float(size),
                self.GAUGES[2]: checked_out / size if size else 0.0,
            }

        self._from("database_pool", self.GAUGES, reader, shape)
