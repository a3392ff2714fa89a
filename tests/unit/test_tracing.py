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
TRACERESPONSE = re.compile("00-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f][13579bdf]")  # W3C, sampled
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
    answers = [call(app, "/items/1"), call(app, "/nowhere")]  # unrouted requests too
    assert [a.status for a in answers] == [200, 404]
    told = [TRACERESPONSE.fullmatch(a.headers["traceresponse"]) for a in answers]
    trace_ids = [m[1] for m in told if m is not None]
    text = metrics.render(OPENMETRICS)[0].decode()
    marks = re.findall(MARK, text)
    assert sorted(marks) == sorted(zip(["/items/{item_id}", "<unmatched>"], trace_ids, strict=True))
    assert "trace_id" not in metrics.render()[0].decode()  # not in the text format
