"""``instrument(app)``: one call wires the middleware, ``/metrics`` and the domain metrics."""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette

from . import multiprocess
from .domain import (
    DatabaseMetrics,
    OAuthMetrics,
    SMSMetrics,
    SourceOptions,
    TaskMetrics,
)
from .eventloop import EventLoopMonitor
from .exposition import MetricsEndpoint
from .factory import MetricFactory
from .families import FamilyWriter
from .health import HealthChecks
from .http import HTTP_BUCKETS, HTTPMetrics, MetricsMiddleware
from .labels import DEFAULT_LABEL_CAP
from .lifecycle import Lifecycle, ListenerAnswers
from .listener import MetricsListener
from .process import ProcessReadings
from .routes import TemplateResolver
from .safe import SafeView, registry_collectors
from .scrape import ERROR_REASONS, ScrapeTimeValues
from .users import UserMetrics

log = logging.getLogger("app_metrics")


class Metrics:
    """The handle ``instrument()`` returns: the registry and every metric family."""

    def __init__(
        self,
        registry: CollectorRegistry,
        factory: MetricFactory,
        *,
        buckets: Sequence[float],
        sms_providers: Sequence[str],
        oauth_providers: Sequence[str],
        task_types: Sequence[str],
        task_queues: Sequence[str],
        source_options: SourceOptions,
        health_history: int,
        multiprocess_dir: str | None,
    ) -> None:
        self.registry = registry
        self.multiprocess_dir = multiprocess_dir
        self.endpoint: MetricsEndpoint | None = None  # set by instrument()
        self.listener: MetricsListener | None = None  # set by instrument(metrics_port=...)
        self._writer = FamilyWriter()
        self._collector_errors = factory.counter(
            "app_metrics_collector_errors_total",
            "Collectors that raised during a scrape; their metrics were left out.",
            ("collector",),
        )
        self._source_errors = factory.counter(
            "app_metrics_scrape_source_errors_total",
            "Scrape-time sources that failed or timed out; their series were left out.",
            ("source", "reason"),
        )
        self.values = ScrapeTimeValues(
            factory.const_labels,
            factory.label_cap,
            factory.reject,
            lambda source, reason: self._source_errors.labels(source, reason).inc(),
            # at 0 from the start: an alert's increase() sees the first failure too
            lambda source: [self._source_errors.labels(source, r) for r in ERROR_REASONS],
        )
        self.http = HTTPMetrics(factory, buckets, shared=bool(multiprocess_dir))
        self.event_loop = EventLoopMonitor(factory)
        self.sms = SMSMetrics(factory, self.values, source_options, sms_providers)
        self.oauth = OAuthMetrics(factory, self.values, source_options, oauth_providers)
        self.tasks = TaskMetrics(factory, self.values, source_options, task_types, task_queues)
        self.users = UserMetrics(factory, self.values, source_options)
        self.database = DatabaseMetrics(self.values, source_options)
        self.health = HealthChecks(
            self.values,
            factory.counter(
                "health_check_failures_total",
                "Health checks that failed, by check and reason (error, timeout, unhealthy).",
                ("check", "reason"),
            ),
            history_size=health_history,
            options=source_options,
        )
        self._merged: multiprocess.Merged | None = None
        if multiprocess_dir:
            self._merged = multiprocess.Merged(multiprocess_dir, [self.values])
            self._collectors = self._merged.collectors
        else:
            registry.register(self.values)
            self._collectors = registry_collectors(registry)
        self.process = ProcessReadings(self._collectors)  # read by the listener, if any

    def holds_token(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` value carries the ``/metrics`` bearer token (never
        when ``/metrics`` has none): for an app's own endpoints that show more to whoever
        may scrape, such as health details."""
        value = None if authorization is None else authorization.encode("latin-1", "replace")
        return self.endpoint is not None and self.endpoint.authorized(value)

    async def refresh(self) -> None:
        """Run the scrape-time sources and health checks that are due."""
        await self.values.refresh()

    def view(self, names: Sequence[str] | None = None, skip: object = None) -> SafeView:
        """What a scrape serves: all workers' metrics in multiprocess mode, never raising."""
        return SafeView(self._collectors, self._collector_failed, names, skip, self.process)

    def _collector_failed(self, name: str) -> None:
        self._collector_errors.labels(name).inc()

    def render(self, accept: str = "", names: Sequence[str] | None = None) -> tuple[bytes, str]:
        """The exposition as ``/metrics`` would serve it (without refreshing).

        Written by app_metrics' own writers (the same text, faster); prometheus_client's
        encoder writes a ``name[]`` selection and the ``dots`` escaping.
        """
        self.event_loop.stall()  # the gauge as of now, also while the loop is blocked
        try:
            encoder, content_type = choose_encoder(accept)
        except Exception:  # prometheus_client trips on some malformed Accept headers
            encoder, content_type = choose_encoder("")
        if names or "escaping=dots" in content_type:
            return encoder(self.view(names)), content_type  # type: ignore[arg-type]
        openmetrics = content_type.startswith("application/openmetrics-text")
        merged, local = self._merged, self.http.local_store
        skip = merged.files if merged is not None else local  # the collector written here
        parts = []
        if skip is not None:
            try:
                fast = merged.text if merged is not None else local.render_text  # type: ignore[union-attr]
                parts.append(fast(openmetrics))
            except Exception:
                name = type(skip).__name__
                log.exception("collector %s failed; its metrics are left out of this scrape", name)
                self._collector_failed(name)
        parts.append(self._writer.write(self.view(skip=skip).collect(), openmetrics))
        if openmetrics:
            parts.append("# EOF\n")
        return "".join(parts).encode(), content_type


def instrument(
    app: Starlette,
    *,
    metrics_path: str = "/metrics",
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    exclude_paths: Collection[str] = (),
    registry: CollectorRegistry | None = None,
    const_labels: Mapping[str, str] | None = None,
    token: str | None = None,
    token_file: str | os.PathLike[str] | None = None,
    buckets: Sequence[float] = HTTP_BUCKETS,
    label_cap: int = DEFAULT_LABEL_CAP,
    sms_providers: Sequence[str] = (),
    oauth_providers: Sequence[str] = (),
    task_types: Sequence[str] = (),
    task_queues: Sequence[str] = (),
    source_timeout: float = 2.0,
    source_ttl: float = 5.0,
    health_history: int = 100,
) -> Metrics:
    """Instrument a FastAPI or Starlette ``app`` and serve ``metrics_path``.

    The middleware wraps the whole app (outside its error handling); ``/metrics``
    is answered by it directly, before the app's own middleware and auth, on the
    exact path. ``exclude_paths`` are raw paths or route templates not measured.
    ``token``/``token_file`` demand ``Authorization: Bearer <token>`` on ``/metrics``.
    ``metrics_port`` also serves ``metrics_path`` on ``metrics_host:metrics_port`` from
    threads of its own (0: any free port), answered while the event loop is saturated or
    blocked; every worker shares it in multiprocess mode (``listener.py``). It and the
    event-loop monitor start with the server (its lifespan startup) and stop with it.
    Call it once, before the app serves its first request.
    """
    if not isinstance(app, Starlette):
        raise TypeError(f"instrument() needs a FastAPI or Starlette app, not {type(app).__name__}")
    if app.middleware_stack is not None:
        raise RuntimeError("instrument() must be called before the app serves its first request")
    if getattr(app, "_app_metrics", None) is not None:
        raise RuntimeError("this app is instrumented already")
    if not metrics_path.startswith("/") or (metrics_path != "/" and metrics_path.endswith("/")):
        raise ValueError(f"metrics_path must start with '/' and not end with one: {metrics_path!r}")
    if metrics_port is not None and (
        not isinstance(metrics_port, int) or not 0 <= metrics_port <= 65535
    ):
        raise ValueError(f"metrics_port must be an int within 0..65535: {metrics_port!r}")
    if label_cap < 1:
        raise ValueError("label_cap must be at least 1")
    if health_history < 1:
        raise ValueError("health_history must be at least 1")
    secret = _read_token(token, token_file)

    mp_dir = multiprocess.directory()
    if mp_dir:
        multiprocess.check_value_class(mp_dir)
        multiprocess.prepare(mp_dir)
    registry = REGISTRY if registry is None else registry
    factory = MetricFactory(registry, const_labels or {}, label_cap)
    metrics = Metrics(
        registry,
        factory,
        buckets=buckets,
        sms_providers=sms_providers,
        oauth_providers=oauth_providers,
        task_types=task_types,
        task_queues=task_queues,
        source_options=SourceOptions(source_timeout, source_ttl),
        health_history=health_history,
        multiprocess_dir=mp_dir,
    )
    endpoint = metrics.endpoint = MetricsEndpoint(metrics.render, metrics.refresh, secret)
    if metrics_port is not None:
        answers = ListenerAnswers(endpoint, metrics.values, metrics.event_loop, metrics.process)
        metrics.listener = MetricsListener(
            metrics_host, metrics_port, metrics_path, answers.respond, reuse_port=bool(mp_dir),
            after=answers.after,
        )  # fmt: skip
    lifecycle = Lifecycle(metrics.event_loop, metrics.listener, metrics.process)
    resolver = TemplateResolver(app.router.routes)
    build_inner = app.build_middleware_stack

    def build_middleware_stack() -> Any:
        return MetricsMiddleware(
            build_inner(),
            metrics=metrics.http,
            resolver=resolver,
            metrics_path=metrics_path,
            metrics_endpoint=endpoint,
            exclude=exclude_paths,
            lifecycle=lifecycle,
        )

    app.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]
    app._app_metrics = metrics  # type: ignore[attr-defined]
    return metrics


def _read_token(token: str | None, token_file: str | os.PathLike[str] | None) -> str | None:
    if token is not None and token_file is not None:
        raise ValueError("give token or token_file, not both")
    if token_file is not None:
        path = Path(token_file)
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise ValueError(f"cannot read the metrics token file {path}: {exc}") from exc
        if not token:
            raise ValueError(f"the metrics token file {path} is empty")
    if token is not None and (not token or token != token.strip()):
        raise ValueError("the metrics token must be non-empty, without surrounding white space")
    return token
