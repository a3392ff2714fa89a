"""Pure ASGI middleware for the HTTP RED metrics.

It wraps the whole application, outside Starlette's ``ServerErrorMiddleware``,
so it sees every status the client sees: the 500 of an unhandled exception and
the 401/429 of other middleware included. The clock stops when the last body
chunk has been sent; background tasks that run afterwards are not latency.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from time import perf_counter
from typing import Any

from starlette.routing import compile_path

from .exemplars import current_trace_id
from .factory import MetricFactory
from .httpstore import LocalStore, SharedStore, Store
from .labels import OTHER, UNMATCHED
from .routes import TemplateResolver

log = logging.getLogger("app_metrics")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Upper bounds in seconds. Dense from 5 ms to 1 s, where API latency objectives
# sit (100, 250, 500 ms, 1 s), then 2.5/5/10 s to tell slow from stuck.
# Eleven finite buckets keep one endpoint at 14 histogram series.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

KNOWN_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")
)
CLIENT_CLOSED = 499  # the client went away before the response was complete (nginx's code)
# Responses slower than this check, before their last chunk, whether the client is still
# there (about 2 µs); faster ones are not worth the cost.
SLOW_RESPONSE = 0.05
EXCLUDED = "http_excluded_requests_total"


class HTTPMetrics:
    """The three HTTP families; a cache maps raw (method, endpoint, status) to its series."""

    def __init__(self, factory: MetricFactory, buckets: Sequence[float], shared: bool) -> None:
        kind = SharedStore if shared else LocalStore
        methods = (*KNOWN_METHODS, OTHER)  # in progress: zero-initialised for each
        self._store: Store = kind(factory, sorted(buckets), methods)
        self.local_store = self._store if isinstance(self._store, LocalStore) else None
        self._guard = factory.guard("http_requests_total", ("method", "endpoint", "status"))
        self._series: dict[tuple[str, str, int], Any] = {}
        self.start = self._store.start
        self._excluded = factory.counter(
            EXCLUDED,
            "Requests to the paths left out of the other HTTP metrics (exclude_paths, such as "
            "health probes), by endpoint and status: a flood of them still shows.",
            ("endpoint", "status"),
        )

    def excluded(self, endpoint: str, status: int) -> None:
        """Count a request to an excluded path (it is in no other HTTP metric)."""
        self._excluded.labels(endpoint, str(status) if 100 <= status <= 599 else OTHER).inc()

    def finish(
        self,
        method: str,
        endpoint: str | None,
        status: int,
        seconds: float,
        trace_id: str | None = None,
    ) -> None:
        """Record a completed request; ``endpoint=None`` means not measured (excluded).
        ``trace_id``: the request's trace, kept as its duration bucket's exemplar."""
        if endpoint is None:
            self._store.finish(method, None, seconds)
            return
        series = self._series.get((method, endpoint, status))
        if series is None:
            series = self._new_series(method, endpoint, status)
        self._store.finish(method, series, seconds, trace_id)

    def observe(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        """Record a request that was not started through ``start`` (tests, back-fills)."""
        method = method if method in KNOWN_METHODS else OTHER
        self.start(method)
        self.finish(method, endpoint, status, seconds)

    def _new_series(self, method: str, endpoint: str, status: int) -> Any:
        label = str(status) if 100 <= status <= 599 else OTHER
        series = self._store.series(*self._guard.clean((method, endpoint, label)))
        if len(self._series) < 20_000:
            self._series[method, endpoint, status] = series
        return series


class MetricsMiddleware:
    """Counts, times and tracks every HTTP request of the wrapped app."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: HTTPMetrics,
        resolver: TemplateResolver,
        metrics_path: str,
        metrics_endpoint: ASGIApp,
        exclude: Collection[str] = (),
        lifecycle: Any = None,
    ) -> None:
        self.app = app
        # what starts with the server (lifecycle.Lifecycle): at its lifespan startup, or
        # at the first request of a server that runs none
        self.lifecycle = lifecycle
        self.metrics = metrics
        self.resolver = resolver
        self.metrics_path = metrics_path
        self.metrics_endpoint = metrics_endpoint
        # raw paths, and templates in the label's form ("/files/{name:path}" -> "/files/{name}")
        self.exclude = frozenset((*exclude, *(compile_path(p)[1] for p in exclude)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan" and self.lifecycle is not None:
                await self.lifecycle.lifespan(self.app, scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        if self.lifecycle is not None and self.lifecycle.pending:
            self.lifecycle.first_request()
        root_path = scope.get("root_path", "")
        path = scope["path"]
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :]
        if path == self.metrics_path:
            await self.metrics_endpoint(scope, receive, send)
            return
        if path in self.exclude:
            await self._excluded(scope, receive, send, path)
            return

        method = scope["method"]
        if method not in KNOWN_METHODS:
            method = OTHER
        self.metrics.start(method)
        start = perf_counter()
        status = 0
        done = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, done
            kind = message["type"]
            if kind == "http.response.start":
                await send(message)
                status = message["status"]
            elif (
                kind == "http.response.body" and not message.get("more_body", False)
            ) or kind == "http.response.pathsend":
                code = status
                if perf_counter() - start >= SLOW_RESPONSE and _client_left(receive):
                    code = CLIENT_CLOSED
                await send(message)
                done = True
                # the app's span (if any) is current here: the app itself calls this send
                trace_id = None if current_trace_id is None else current_trace_id()
                self._record(scope, root_path, method, code, start, trace_id)
            else:
                await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException as exc:
            if not done:
                self._record(scope, root_path, method, _after_error(exc), start)
            raise
        if not done:
            # The app returned without finishing its response: the client went away
            # mid-stream, or nothing was sent at all (the server then answers 500).
            self._record(scope, root_path, method, CLIENT_CLOSED if status else 500, start)

    async def _excluded(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        """An excluded path: only its status is counted, once the app is done."""
        status = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException as exc:
            self.metrics.excluded(path, status or _after_error(exc))
            raise
        self.metrics.excluded(path, status or 500)

    def _record(
        self,
        scope: Scope,
        root_path: str,
        method: str,
        status: int,
        start: float,
        trace_id: str | None = None,
    ) -> None:
        try:
            endpoint: str | None = self.resolver.endpoint(scope, root_path)
        except Exception:  # a route whose matches() fails on a copied scope, ...
            log.exception("no route template for %s; counted as %s", scope["path"], UNMATCHED)
            endpoint = UNMATCHED
        if endpoint in self.exclude:
            self.metrics.excluded(endpoint, status)
            endpoint = None
        self.metrics.finish(method, endpoint, status, perf_counter() - start, trace_id)


def _client_left(receive: Receive) -> bool:
    """Whether ``receive`` already holds an ``http.disconnect``, without waiting for one.

    Servers such as uvicorn drop the response of a client that left without raising,
    so a slow response is checked before its last chunk goes out. The coroutine is
    stepped once: if it would wait, nothing is pending and it is closed unawaited.
    """
    step = receive()
    try:
        step.send(None)  # type: ignore[attr-defined]
    except StopIteration as finished:
        message = finished.value
        return isinstance(message, dict) and message.get("type") == "http.disconnect"
    except Exception:
        return False
    step.close()  # type: ignore[attr-defined]
    return False


def _after_error(exc: BaseException) -> int:
    """The status to count when the app raised before its response was complete."""
    if isinstance(exc, OSError | asyncio.CancelledError):
        return CLIENT_CLOSED
    return 500
