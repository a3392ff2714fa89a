"""A span per HTTP request (``ASSISTANT_TRACING``), so that app_metrics keeps its trace id as
the request duration's exemplar (OpenMetrics; Prometheus' ``query_exemplars``).

The spans go nowhere: an SDK tracer provider of the app's own, every span sampled, no
exporter (the stack runs no trace backend; an exporter is one ``add_span_processor`` away).
The middleware sits inside app_metrics' middleware, so the span is still current when the
app sends its last body chunk, where app_metrics reads it. Each response carries its trace
in a ``traceresponse`` header (W3C Trace Context level 2). Without OpenTelemetry installed
the setting is refused with a warning and nothing changes.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("assistant")

try:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON
except ImportError:  # the optional dependency is not installed
    TracerProvider = None  # type: ignore[assignment,misc]


class Tracing:
    """Pure ASGI middleware: each HTTP request runs inside a server span of its own."""

    def __init__(self, app: ASGIApp, tracer: Any) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # the raw method only: the route template is app_metrics' label, known after routing
        with self.tracer.start_as_current_span(f"HTTP {scope['method']}") as span:
            header = (b"traceresponse", traceresponse(span.get_span_context()))

            async def send_traced(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message = {**message, "headers": [*message.get("headers", ()), header]}
                await send(message)

            await self.app(scope, receive, send_traced)


def traceresponse(context: Any) -> bytes:
    """W3C Trace Context's ``traceresponse`` value: a client (the integration test) learns
    the trace id of its request, to find it among the exemplars."""
    ids = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    return ids.encode()


def install(app: Any, enabled: bool) -> bool:
    """Add the middleware to ``app`` when ``enabled`` and OpenTelemetry's SDK is installed;
    whether it was added."""
    if not enabled:
        return False
    if TracerProvider is None:
        log.warning("ASSISTANT_TRACING is on but opentelemetry-sdk is not installed: no spans")
        return False
    tracer = TracerProvider(sampler=ALWAYS_ON).get_tracer("assistant")
    app.add_middleware(Tracing, tracer=tracer)
    return True
