"""A blocked event loop, live (issue 16): `POST /debug/block` (dev only) holds the API's loop
for BLOCK seconds with a `time.sleep` in an async route; the heartbeat's late beat lands in
`event_loop_lag_seconds` once the loop runs again, EventLoopBlocked fires in Prometheus and
reaches the backend team's receiver, with its runbook.

What it leaves behind: the alert, a ticket (warning, team backend), holds for its 10-minute
window; it is grouped alone (alertname, job, severity), and no later test reads it: the
faults and the HA cluster test match their own alert names on the oncall and platform
receivers, the inhibition test its own `test_run` label. The loop is running again and the
API's target up before the test ends."""

from __future__ import annotations

import time
import urllib.request
from typing import Any

import pytest

from stack import runbooks

from .conftest import FIGURES, get, query, until
from .runtimes import Stack

pytestmark = pytest.mark.integration

ALERT = "EventLoopBlocked"
BLOCK = 5.0  # seconds: past the 2.5 s bucket, inside the 5 s one
# the block, a scrape (1 s in dev), an evaluation (1 s), Alertmanager's group_wait (1 s) and
# a busy machine's slack
FIRING_TIMEOUT = 60.0
API = 'job="personal_assistant_api", component="api"'


def firing(stack: Stack) -> list[dict[str, Any]]:
    return query(stack, f'ALERTS{{alertname="{ALERT}", alertstate="firing", {API}}}')


def delivered(stack: Stack, since: float) -> list[dict[str, Any]]:
    """The firing EventLoopBlocked alerts of the API that reached the backend receiver after
    ``since`` (epoch seconds)."""
    return [
        alert
        for item in get(f"{stack.receiver}/notifications", receiver="backend")
        if item["received_at"] >= since
        for alert in item["payload"]["alerts"]
        if alert["status"] == "firing"
        and alert["labels"]["alertname"] == ALERT
        and alert["labels"].get("component") == "api"
    ]


def block(stack: Stack, seconds: float) -> float:
    """Block the first API replica's loop; returns how long the request took."""
    token = stack.api_token_file.read_text().strip()
    request = urllib.request.Request(
        f"{stack.api}/debug/block?seconds={seconds:g}", b"", method="POST",
        headers={"Authorization": f"Bearer {token}"},
    )  # fmt: skip
    begin = time.monotonic()
    with urllib.request.urlopen(request, timeout=seconds + 30) as response:
        assert response.status == 200
    return time.monotonic() - begin


def beats_later_than(stack: Stack, le: str, window: str = "2m") -> float:
    """Beats of the API's loop later than the bucket ``le`` within ``window``."""
    result = query(
        stack,
        f"sum(increase(event_loop_lag_seconds_count{{{API}}}[{window}]))"
        f' - sum(increase(event_loop_lag_seconds_bucket{{{API}, le="{le}"}}[{window}]))',
    )
    return float(result[0]["value"][1]) if result else 0.0


def test_a_blocked_loop_fires_event_loop_blocked_and_reaches_the_backend(stack: Stack) -> None:
    # the heartbeat's series are there before the block (they exist from the loop's start)
    until(lambda: query(stack, f"event_loop_lag_seconds_count{{{API}}}"), 30.0, 1.0,
          "the API's event-loop heartbeat scraped")  # fmt: skip
    already = firing(stack)
    assert not already, f"{ALERT} fires before the block: a loop blocked by itself: {already}"

    since = time.time()
    took = block(stack, BLOCK)
    assert took >= BLOCK

    alerts = until(lambda: firing(stack), FIRING_TIMEOUT, 0.5, f"{ALERT} firing in Prometheus")
    in_prometheus = time.time() - since
    sent = until(lambda: delivered(stack, since), FIRING_TIMEOUT, 0.5,
                 f"{ALERT} delivered to the backend receiver")  # fmt: skip
    received = time.time() - since

    labels = sent[0]["labels"]
    assert labels["severity"] == "warning" and labels["team"] == "backend"
    assert labels["env"] == "dev"
    assert labels["instance"] == alerts[0]["metric"]["instance"]
    assert labels["instance"] in sent[0]["annotations"]["summary"]
    page = runbooks.page(sent[0]["annotations"]["runbook_url"])
    assert page is not None and page.name == f"{ALERT}.md" and page.is_file()
    # the histogram recorded one beat about BLOCK late: past the 2.5 s bucket (read through
    # the metrics listener, the stall gauge can fire the alert while the block still lasts,
    # before the late beat is recorded and scraped)
    until(lambda: beats_later_than(stack, "2.5") >= 1, 30.0, 1.0,
          "a beat later than 2.5 s in event_loop_lag_seconds")  # fmt: skip

    # nothing left blocked: the loop runs again and the API's scrapes succeed
    until(lambda: query(stack, f"event_loop_stall_seconds{{{API}}} < 1"), 30.0, 1.0,
          "the API's loop running again")  # fmt: skip
    until(lambda: query(stack, f"min(up{{{API}}}) == 1"), 30.0, 1.0, "the API's target up")
    FIGURES.append(
        f"the API's loop blocked {BLOCK:g} s: {ALERT} firing {in_prometheus:.1f} s and "
        f"delivered {received:.1f} s after the block began"
    )
