"""Exemplars: the trace id of a request's OpenTelemetry span on its duration bucket, in
OpenMetrics only; without a sampled span (or without OpenTelemetry) nothing changes."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
from typing import Any

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse

from app_metrics import exemplars
from app_metrics.factory import MetricFactory
from app_metrics.http import HTTP_BUCKETS, HTTPMetrics

from .driver import request
from .test_endpoint import instrumented

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
BUCKET = re.compile(r"^http_request_duration_seconds_bucket\{(.*)\} (\S+)(?: # (.*))?$")


class Spans:
    """A span around each request, inside app_metrics' middleware (as the sample service
    does); ``seen`` gets the trace ids it made, in order."""

    def __init__(self, app: Any, provider: TracerProvider, seen: list[str]) -> None:
        self.app = app
        self.tracer = provider.get_tracer("test")
        self.seen = seen

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with self.tracer.start_as_current_span("request") as span:
            self.seen.append(format(span.get_span_context().trace_id, "032x"))
            await self.app(scope, receive, send)


def traced(provider: TracerProvider | None = None) -> tuple[FastAPI, Any, list[str]]:
    """An instrumented app whose requests run in a span; the trace ids made."""
    app, metrics = instrumented()

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> Any:
            yield b"a"
            await asyncio.sleep(0.03)
            yield b"b"

        return StreamingResponse(chunks())

    seen: list[str] = []
    app.add_middleware(Spans, provider=provider or TracerProvider(), seen=seen)
    return app, metrics, seen


def buckets(text: str) -> dict[str, tuple[str, str | None]]:
    """Each duration bucket line of one label set by its ``le``: (count, exemplar or None)."""
    out = {}
    for line in text.splitlines():
        match = BUCKET.match(line)
        if match:
            le = re.search(r'le="([^"]*)"', match[1])[1]  # type: ignore[index]
            out[le] = (match[2], match[3])
    return out


def run(app: Any, *paths: str) -> None:
    async def main() -> None:
        for path in paths:
            assert (await request(app, path)).status == 200

    asyncio.run(main())


def test_opentelemetry_is_found_here() -> None:
    assert exemplars.current_trace_id is not None  # the dev requirements install the SDK


def test_a_sampled_span_leaves_its_trace_id_on_its_bucket_in_openmetrics_only() -> None:
    app, metrics, ids = traced()
    run(app, "/items/1")
    [trace_id] = ids
    body, content_type = metrics.render(OPENMETRICS)
    assert content_type.startswith("application/openmetrics-text")
    lines = buckets(body.decode())
    marked = {le: ex for le, (_, ex) in lines.items() if ex is not None}
    assert len(marked) == 1, lines
    [(le, exemplar)] = marked.items()
    labels, seconds, timestamp = exemplar.split(" ")
    assert labels == f'{{trace_id="{trace_id}"}}'
    assert re.fullmatch("[0-9a-f]{32}", trace_id)
    assert len(labels) - 2 <= 128  # OpenMetrics' limit on an exemplar's label set
    # the bucket is the first whose bound holds the observed value
    bounds = [float(b) for b in lines]
    assert float(le) == min(b for b in bounds if b >= float(seconds))
    assert float(timestamp) > 1.7e9
    # prometheus_client reads it back, and writes the same bytes from the store's collect()
    [family] = [f for f in om_parse(body.decode()) if f.name == "http_request_duration_seconds"]
    [sample] = [s for s in family.samples if s.exemplar is not None]
    assert sample.exemplar.labels == {"trace_id": trace_id}
    local = metrics.http.local_store
    assert local is not None
    assert local.render_text(True) + "# EOF\n" == openmetrics_latest(local).decode()
    # the text format has no exemplars: the same bytes as prometheus_client's text encoder
    text = metrics.render()[0].decode()
    assert " # {" not in text
    assert local.render_text() == generate_latest(local).decode()  # type: ignore[arg-type]


def test_the_latest_trace_of_each_bucket_is_kept_from_every_thread() -> None:
    app, metrics, ids = traced()
    run(app, "/items/1", "/items/2")
    worker = threading.Thread(target=run, args=(app, "/items/3"))
    worker.start()
    worker.join()
    text = metrics.render(OPENMETRICS)[0].decode()
    found = [ex for _, ex in buckets(text).values() if ex is not None]
    assert found, text
    assert ids[-1] in " ".join(found)  # the last request's trace, whichever bucket
    local = metrics.http.local_store
    assert local is not None
    assert local.render_text(True) + "# EOF\n" == openmetrics_latest(local).decode()


def test_a_streamed_response_carries_its_span_to_the_last_chunk() -> None:
    app, metrics, ids = traced()
    run(app, "/stream")
    text = metrics.render(OPENMETRICS)[0].decode()
    assert ids[0] in text


def test_an_unsampled_or_absent_span_changes_nothing() -> None:
    plain, plain_metrics = instrumented()
    app, metrics, ids = traced(TracerProvider(sampler=ALWAYS_OFF))
    run(app, "/items/1")
    run(plain, "/items/1")
    assert len(ids) == 1
    for accept in ("", OPENMETRICS):
        ours = metrics.render(accept)[0].decode()
        assert " # {" not in ours
        local = metrics.http.local_store
        assert local is not None
        assert local._templates.keys() <= {(False, False), (True, False)}
    # no span at all: the template and the output as without tracing
    plain_text = plain_metrics.render(OPENMETRICS)[0].decode()
    assert " # {" not in plain_text


def test_counts_past_a_million_keep_their_exemplars() -> None:
    app, metrics, ids = traced()
    run(app, "/items/1")
    local = metrics.http.local_store
    assert local is not None
    for shard in local._shards.values():
        for cell in shard.cells.values():
            cell.buckets[-1] += 1_234_567
    text = local.render_text(True)
    assert "e+06" in text and ids[0] in text
    assert text + "# EOF\n" == openmetrics_latest(local).decode()


def test_without_opentelemetry_nothing_is_looked_up() -> None:
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "from app_metrics import exemplars, http\n"
        "assert exemplars.current_trace_id is None and http.current_trace_id is None\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_api_alone_records_no_trace_so_nothing_is_looked_up() -> None:
    code = (
        "import sys; sys.modules['opentelemetry.sdk'] = None\n"
        "import importlib.util as u; real = u.find_spec\n"
        "u.find_spec = lambda name, *a: None if name.startswith('opentelemetry.sdk') "
        "else real(name, *a)\n"
        "from app_metrics import exemplars\n"
        "assert exemplars.current_trace_id is None\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_multiprocess_mode_keeps_no_exemplars() -> None:
    # prometheus_client's mmap files hold no exemplars: the shared store takes none
    registry = CollectorRegistry()
    shared = HTTPMetrics(MetricFactory(registry, {}), HTTP_BUCKETS, shared=True)
    shared.finish("GET", "/a", 200, 0.01, "ab" * 16)
    assert shared.local_store is None
    assert " # {" not in openmetrics_latest(registry).decode()
