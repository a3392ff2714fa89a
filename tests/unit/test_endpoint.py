"""The /metrics endpoint: exact path, formats, gzip, name[] filter, token, never failing."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from starlette.middleware import Middleware

import app_metrics

from .driver import call, isolated, scrape, value
from .test_routes import DenyAll


def instrumented(
    app: FastAPI | None = None, **options: object
) -> tuple[FastAPI, app_metrics.Metrics]:
    """An app with one route, instrumented with an isolated registry."""
    app = app or FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> int:
        return item_id

    return app, isolated(app, **options)


def test_metrics_answers_on_the_exact_path_without_redirect() -> None:
    app, _ = instrumented()
    result = call(app, "/metrics")
    assert result.status == 200
    assert result.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert b"# TYPE http_requests_total counter" in result.body
    assert call(app, "/metrics/").status == 404  # not a metrics alias, not a redirect


def test_custom_metrics_path() -> None:
    app, _ = instrumented(metrics_path="/internal/prometheus")
    assert call(app, "/internal/prometheus").status == 200
    assert call(app, "/metrics").status == 404


def test_openmetrics_is_served_when_accepted() -> None:
    app, _ = instrumented()
    call(app, "/items/1")
    result = call(
        app, "/metrics", headers=[("Accept", "application/openmetrics-text; version=1.0.0")]
    )
    assert result.headers["content-type"].startswith("application/openmetrics-text")
    text = result.body.decode()
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in om_parse(text)}
    assert families["http_requests"].type == "counter"


@pytest.mark.parametrize(
    "accept", ["application/openmetrics-text;version=x", "text/plain;version=zz", ";;,=,"]
)
def test_a_malformed_accept_header_gets_the_text_format(accept: str) -> None:
    app, _ = instrumented()
    result = call(app, "/metrics", headers=[("Accept", accept)])
    assert result.status == 200
    assert result.headers["content-type"].startswith("text/plain; version=0.0.4")


def test_gzip_only_when_accepted() -> None:
    app, _ = instrumented()
    plain = call(app, "/metrics")
    assert "content-encoding" not in plain.headers
    zipped = call(app, "/metrics", headers=[("Accept-Encoding", "br, gzip;q=0.8")])
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["vary"] == "accept, accept-encoding"
    assert int(zipped.headers["content-length"]) == len(zipped.body)
    assert b"http_requests_total" in gzip.decompress(zipped.body)
    refused = call(app, "/metrics", headers=[("Accept-Encoding", "gzip;q=0")])
    assert "content-encoding" not in refused.headers


def test_name_filter_returns_only_the_named_families() -> None:
    app, _ = instrumented()
    call(app, "/items/1")
    query = b"name[]=http_requests_total&name[]=http_request_duration_seconds"
    text = call(app, "/metrics", query=query).body.decode()
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
    assert names == {
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "http_request_duration_seconds_sum",
        "http_request_duration_seconds_count",
    }


def test_head_and_other_methods() -> None:
    app, _ = instrumented()
    head = call(app, "/metrics", method="HEAD")
    assert head.status == 200
    assert head.body == b""
    assert int(head.headers["content-length"]) > 0
    post = call(app, "/metrics", method="POST")
    assert post.status == 405
    assert post.headers["allow"] == "GET, HEAD"


def test_token_is_required_when_configured() -> None:
    app, _ = instrumented(token="s3cret-token")
    assert call(app, "/metrics").status == 401
    wrong = call(app, "/metrics", headers=[("Authorization", "Bearer nope")])
    assert wrong.status == 401
    assert wrong.headers["www-authenticate"].startswith("Bearer")
    right = call(app, "/metrics", headers=[("Authorization", "Bearer s3cret-token")])
    assert right.status == 200


def test_token_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("from-a-file\n")
    app, _ = instrumented(token_file=path)
    assert call(app, "/metrics").status == 401
    ok = call(app, "/metrics", headers=[("Authorization", "Bearer from-a-file")])
    assert ok.status == 200


def test_metrics_bypasses_the_apps_own_authentication() -> None:
    app, _ = instrumented(FastAPI(middleware=[Middleware(DenyAll)]))
    assert call(app, "/items/1").status == 401
    assert call(app, "/metrics").status == 200


def test_scrapes_are_not_counted_as_api_traffic() -> None:
    app, _ = instrumented()
    for _ in range(3):
        scrape(app)
    assert 'endpoint="/metrics"' not in scrape(app)


class Recorder:
    """A collector that notes which thread collects it."""

    def __init__(self) -> None:
        self.threads: list[int] = []

    def collect(self) -> Iterator[Metric]:
        self.threads.append(threading.get_ident())
        yield GaugeMetricFamily("recorder_probe", "probe", value=1)


def test_rendering_happens_off_the_event_loop_thread() -> None:
    registry = CollectorRegistry()
    recorder = Recorder()
    registry.register(recorder)
    app, _ = instrumented(registry=registry)
    loop_thread: list[int] = []

    @app.get("/whoami")
    async def whoami() -> str:
        loop_thread.append(threading.get_ident())
        return "me"

    import asyncio

    from .driver import request

    async def both() -> None:
        await request(app, "/whoami")
        await request(app, "/metrics")

    asyncio.run(both())
    assert recorder.threads
    assert loop_thread
    assert recorder.threads[-1] != loop_thread[0]


class Broken:
    def collect(self) -> Iterator[Metric]:
        raise RuntimeError("exporter bug")
        yield  # pragma: no cover


def test_a_failing_collector_leaves_metrics_answering_200_and_is_counted() -> None:
    registry = CollectorRegistry()
    registry.register(Broken())
    app, _ = instrumented(registry=registry)
    call(app, "/items/1")
    first = call(app, "/metrics")
    assert first.status == 200
    assert b"http_requests_total" in first.body
    text = scrape(app)
    assert value(text, "app_metrics_collector_errors_total", collector="Broken") == 2


def test_exposition_parses_and_passes_promtool() -> None:
    app, metrics = instrumented(
        const_labels={"service": "pa-api"},
        sms_providers=["twilio"],
        oauth_providers=["google"],
        task_types=["send_sms"],
        task_queues=["default"],
    )
    call(app, "/items/1")
    metrics.sms.message("twilio", "success", cost=0.01, duration_seconds=0.2)
    text = scrape(app)
    assert (
        value(
            text,
            "http_requests_total",
            method="GET",
            endpoint="/items/{item_id}",
            status="200",
            service="pa-api",
        )
        == 1
    )
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (CI installs it); the parser check above ran")
    out = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == "" and out.stderr.strip() == "", out.stdout + out.stderr


def test_fast_text_renderer_writes_what_generate_latest_writes() -> None:
    from prometheus_client.exposition import generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

    app, metrics = instrumented(const_labels={"service": "pa", "zone": 'a"b'})
    for path in ("/items/1", "/items/2", "/nope"):
        call(app, path)
    metrics.http.observe("POST", 'odd "label" \\ with\nnewline', 201, 0.3)
    metrics.http.observe("GET", "/slow", 200, 42.0)
    local = metrics.http.local_store
    assert local is not None
    assert local.render_text() == generate_latest(local).decode()  # type: ignore[arg-type]
    om_reference = openmetrics_latest(local).decode().removesuffix("# EOF\n")  # type: ignore[arg-type]
    assert local.render_text(openmetrics=True) == om_reference
    # and /metrics (fast path) carries the same samples as the generic OpenMetrics path
    text = scrape(app)
    om = call(app, "/metrics", headers=[("Accept", "application/openmetrics-text; version=1.0.0")])
    om_samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for f in om_parse(om.body.decode())
        for s in f.samples
        if s.name.startswith("http_")
    }
    from .driver import samples as text_samples

    ours = {k: v for k, v in text_samples(text).items() if k[0].startswith("http_")}
    assert ours == om_samples
