"""The sample service's span per request (assistant/tracing.py), inside app_metrics'
middleware: its trace id is the request duration's exemplar."""

from __future__ import annotations

import re

from fastapi import FastAPI

from assistant import tracing
from assistant.config import Settings

from .driver import call
from .test_endpoint import instrumented

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
MARK = r'_bucket\{endpoint="([^"]+)",.*\} \S+ # \{trace_id="([0-9a-f]{32})"\}'


def test_tracing_is_off_unless_asked_for() -> None:
    assert Settings(api_token="t").tracing is False
    assert Settings.from_env({"ASSISTANT_API_TOKEN": "t", "ASSISTANT_TRACING": "true"}).tracing
    app = FastAPI()
    assert tracing.install(app, False) is False
    assert app.user_middleware == []


def test_each_request_leaves_a_sampled_trace_id_on_its_duration_bucket() -> None:
    app = FastAPI()
    assert tracing.install(app, True)
    app, metrics = instrumented(app)
    assert call(app, "/items/1").status == 200
    assert call(app, "/nowhere").status == 404  # unrouted requests are traced too
    text = metrics.render(OPENMETRICS)[0].decode()
    marks = re.findall(
        r'_bucket\{endpoint="([^"]+)",.*\} \S+ # \{trace_id="([0-9a-f]{32})"\}', text
    )
    assert {endpoint for endpoint, _ in marks} == {"/items/{item_id}", "<unmatched>"}
    assert len({trace_id for _, trace_id in marks}) == 2
    assert "trace_id" not in metrics.render()[0].decode()  # not in the text format
