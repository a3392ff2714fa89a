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


def test_a_request_leaves_its_trace_id_as_an_exemplar_prometheus_returns(stack: Stack) -> None:
    since = time.time() - 1
    token = stack.api_token_file.read_text().strip()
    for _ in range(5):  # routed or not, each request runs in a span of its own
        request = urllib.request.Request(
            f"{stack.api}/users/me", headers={"Authorization": f"Bearer {token}"}
        )
        try:
            urllib.request.urlopen(request, timeout=10).close()
        except urllib.error.HTTPError as answered:  # a 4xx is measured the same
            answered.close()
    found = until(lambda: exemplars(stack, since), WAIT, 1.0, f"an exemplar on {SELECTOR}")
    for labels, exemplar in found:
        assert set(exemplar["labels"]) == {"trace_id"}, exemplar
        assert TRACE_ID.fullmatch(exemplar["labels"]["trace_id"]), exemplar
        # the latest request of its bucket: within that bucket's bound
        assert float(exemplar["value"]) <= float(labels["le"]), (labels, exemplar)
        assert float(exemplar["timestamp"]) >= since
