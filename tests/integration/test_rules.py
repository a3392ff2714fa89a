"""Every rule evaluates, and every selector in it matches series of the running stack: no
rule that could never fire."""

from __future__ import annotations

import time

import pytest

from stack import ROOT, producers
from stack.processes import scrape_jobs
from stack.promql import selectors
from stack.rules import needs_history

from .conftest import get, until
from .runtimes import Stack

pytestmark = pytest.mark.integration

SERIES_WAIT = 90.0
# Series an exporter creates only at the first event, so a healthy stack has none: redis_exporter
# 1.45 shows an error kind of Redis' errorstats after its first error. Their rules must also
# fire when the series appears (an `unless ... offset` clause: increase() misses the first
# value), which the test checks instead; their promtool cases cover the firing.
BORN_AT_FIRST_EVENT = {'redis_errors_total{err="OOM"}'}
# A rule that reads further back than this records nothing on a stack this young: the anomaly
# baselines read the same hour one to three weeks ago (docs/anomaly.md). Its recorded name, and
# every name recorded from it, match nothing here; their promtool cases cover them.
HISTORY = 86400.0


def test_selector_extraction() -> None:
    assert selectors('sum by (job, le) (rate(x_total{a="b"}[5m])) / on(job) y') == [
        'x_total{a="b"}',
        "y",
    ]
    assert selectors("vector(1)") == []
    assert selectors('up{job=~"a|b"} == 0') == ['up{job=~"a|b"}']
    assert selectors("max without (instance) (x offset 5m) > 1e3") == ["x"]


def rules(stack: Stack) -> list[dict]:
    groups = get(f"{stack.prometheus}/api/v1/rules")["data"]["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_every_rule_group_evaluates_without_error(stack: Stack) -> None:
    until(lambda: all(r["lastEvaluation"] > "2000" for r in rules(stack)), 30, 1,
          "every rule evaluated once")  # fmt: skip
    failing = [(r["name"], r["lastError"]) for r in rules(stack) if r["health"] != "ok"]
    assert not failing


def test_every_selector_in_every_rule_matches_series(stack: Stack) -> None:
    """Within a bounded wait: the traffic creates some series only once it has run a little."""
    young = needs_history(ROOT, HISTORY)
    assert "signal:value:expected" in young  # the anomaly baselines, a week back and more
    # exposed by a job this topology does not scrape (vmalert's, in the single topology; its
    # alert's names are checked live in HA: tests/integration/ha/test_global_rules.py)
    jobs = scrape_jobs(stack.prometheus)
    elsewhere = {n for job, names in producers.EXPOSED.items() if job not in jobs for n in names}
    wanted = {
        (r["name"], sel)
        for r in rules(stack)
        for sel in selectors(r["query"])
        if sel.split("{")[0] not in young | elsewhere
    }
    deadline = time.monotonic() + SERIES_WAIT
    while True:
        start = str(time.time() - 600)
        series = f"{stack.prometheus}/api/v1/series"
        wanted = {
            (name, selector)
            for name, selector in wanted
            if not get(series, **{"match[]": selector, "start": start})["data"]
        }
        if not wanted or time.monotonic() > deadline:
            break
        time.sleep(2)
    born = {(name, sel) for name, sel in wanted if sel in BORN_AT_FIRST_EVENT}
    assert not sorted(wanted - born), "selectors that match nothing in the running stack"
    queries = {r["name"]: r["query"] for r in rules(stack)}
    for name, selector in born:
        assert f"unless {selector} offset" in queries[name], f"{name} misses {selector}'s first"
