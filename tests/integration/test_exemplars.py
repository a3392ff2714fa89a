"""Exemplars end to end: the dev API's span per request (ASSISTANT_TRACING), its trace id on the
request duration's bucket in the OpenMetrics that Prometheus scrapes, stored
(--enable-feature=exemplar-storage) and returned by /api/v1/query_exemplars."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from .conftest import get, until
from .runtimes import Stack

pytestmark = pytest.mark.integration

SELECTOR = 'http_request_duration_seconds_bucket{job="personal_assistant_api"}'
TRACE_ID = re.compile(r"[0-9a-f]{32}")
WAIT = 60.0  # a few scrape intervals
# a path no route matches (endpoint="<unmatched>"), which the traffic generator never asks
# for: nothing else lands in these buckets, so the exemplar scraped is one of ours
PROBE = "/exemplar-probe"
SPACING = 2.0  # between the probes: some scrape sees each bucket's latest


def exemplars(stack: Stack, since: float) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """Each (series labels, exemplar) Prometheus holds for the API's duration buckets from
    ``since`` on."""
    body = get(
        f"{stack.prometheus}/api/v1/query_exemplars",
        query=SELECTOR,
        start=f"{since:.3f}",
        end=f"{time.time() + 60:.3f}",
    )
    assert body["status"] == "success", body
    return [(s["seriesLabels"], e) for s in body["data"] for e in s["exemplars"]]


def probe(stack: Stack, token: str) -> str:
    """One request to PROBE; the trace id its ``traceresponse`` header names."""
    request = urllib.request.Request(
        f"{stack.api}{PROBE}", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        answer = urllib.request.urlopen(request, timeout=10)
    except urllib.error.HTTPError as error:  # the 404 of an unmatched path
        answer = error
    with answer:
        header = answer.headers["traceresponse"]
    assert header, "no traceresponse header: is ASSISTANT_TRACING on (dev)?"
    return header.split("-")[1]  # type: ignore[no-any-return]


def test_a_request_leaves_its_trace_id_as_an_exemplar_prometheus_returns(stack: Stack) -> None:
    since = int(time.time() * 1000 - 1000) / 1000  # Prometheus keeps milliseconds
    token = stack.api_token_file.read_text().strip()
    ours = []
    for _ in range(4):
        ours.append(probe(stack, token))
        time.sleep(SPACING)

    def ours_found() -> list[tuple[dict[str, str], dict[str, Any]]]:
        found = exemplars(stack, since)
        return found if any(e["labels"].get("trace_id") in ours for _, e in found) else []

    found = until(ours_found, WAIT, 1.0, f"one of the trace ids {ours} on {SELECTOR}")
    for labels, exemplar in found:
        assert set(exemplar["labels"]) == {"trace_id"}, exemplar
        assert TRACE_ID.fullmatch(exemplar["labels"]["trace_id"]), exemplar
        # the latest request of its bucket: within that bucket's bound
        assert float(exemplar["value"]) <= float(labels["le"]), (labels, exemplar)
        assert float(exemplar["timestamp"]) >= since
    mine = [labels for labels, e in found if e["labels"]["trace_id"] in ours]
    assert {labels["endpoint"] for labels in mine} == {"<unmatched>"}, mine
