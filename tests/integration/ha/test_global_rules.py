"""The rules on the global view: vmalert evaluates the anomaly rules (the baselines read three
weeks back, further than a replica keeps) once, against VictoriaMetrics, and writes their
results back to it; the Prometheus replicas neither load nor hold them."""

from __future__ import annotations

import time

import pytest

from stack import ROOT
from stack.rules import alerts, read

from ..conftest import FIGURES, get, until
from ..runtimes import Stack
from .conftest import url_of

pytestmark = pytest.mark.integration

GROUPS = {"anomaly.records", "anomaly.alerts"}  # prometheus/rules/anomaly.rules.yml
# recorded by vmalert from nothing but its rule (a constant): no history needed
CONSTANT = 'signal:value:floor{signal="request_rate"}'
# recorded from the replicas' series in the store: 15 minutes of request rate, at once
SIGNAL = 'signal:value:smooth15m{signal="request_rate"}'
REPLICAS = ("prometheus", "prometheus-2")
WRITTEN = 60.0  # s: an evaluation (1 s in dev), a remote-write flush (5 s), the store's offset


def store_query(stack: Stack, expr: str) -> list[dict]:
    body = get(f"{url_of(stack, 'victoriametrics')}/api/v1/query", query=expr)
    assert body["status"] == "success", body
    return body["data"]["result"]  # type: ignore[no-any-return]


def test_vmalert_loads_the_anomaly_groups(ha: Stack) -> None:
    body = get(f"{url_of(ha, 'vmalert')}/api/v1/rules")
    groups = {g["name"]: g for g in body["data"]["groups"]}
    assert set(groups) == GROUPS
    rules = [r for g in groups.values() for r in g["rules"]]
    alerts = sorted(r["name"] for r in groups["anomaly.alerts"]["rules"])
    assert alerts == ["AnomalyHigh", "AnomalyLow"]
    FIGURES.append(f"HA ({ha.runtime}): vmalert evaluates {len(rules)} anomaly rules in "
                   f"{len(groups)} groups")  # fmt: skip


def test_its_recording_rules_reach_the_store_with_the_replicas_labels(ha: Stack) -> None:
    begin = time.monotonic()
    (constant,) = until(lambda: store_query(ha, CONSTANT), WRITTEN, 1.0,
                        f"{CONSTANT} in VictoriaMetrics")  # fmt: skip
    waited = time.monotonic() - begin
    assert constant["value"][1] == "0.1"
    assert constant["metric"].get("env") == "dev" and "replica" not in constant["metric"]
    signals = until(lambda: store_query(ha, SIGNAL), WRITTEN, 1.0, f"{SIGNAL} in the store")
    jobs = {s["metric"].get("job") for s in signals}
    assert "personal_assistant_api" in jobs, signals
    rate = float(signals[0]["value"][1])
    FIGURES.append(f"HA ({ha.runtime}): vmalert's {CONSTANT} in the store {waited:.1f} s into "
                   f"the test; request rate {rate:.2f}/s recorded")  # fmt: skip


def test_the_replicas_neither_load_nor_hold_the_anomaly_rules(ha: Stack) -> None:
    for replica in REPLICAS:
        url = url_of(ha, replica)
        groups = get(f"{url}/api/v1/rules")["data"]["groups"]
        assert groups, f"{replica}: no rule group at all"
        assert not GROUPS & {g["name"] for g in groups}, replica
        held = get(f"{url}/api/v1/query", query='count({__name__=~"signal:.+"})')
        assert held["data"]["result"] == [], f"{replica} holds anomaly series: {held}"


def test_each_replica_reads_vmalerts_failures_and_finds_none(ha: Stack) -> None:
    """VmalertFailing reads what the running vmalert exports: its expression less its `> 0`
    answers 0 for vmalert on each replica (nothing at all: a metric name or label that this
    vmalert does not have, and the alert could never fire)."""
    document = read(ROOT / "prometheus" / "rules" / "platform.rules.yml")
    (rule,) = [a for a in alerts(document) if a["alert"] == "VmalertFailing"]
    failures = rule["expr"].strip().removesuffix("> 0")
    assert failures != rule["expr"].strip(), "VmalertFailing no longer ends in `> 0`"
    for replica in REPLICAS:
        url = f"{url_of(ha, replica)}/api/v1/query"
        (found,) = until(lambda u=url: get(u, query=failures)["data"]["result"], WRITTEN, 1.0,
                         f"{replica}: VmalertFailing's failures of vmalert")  # fmt: skip
        assert found["metric"]["job"] == "vmalert", found
        assert float(found["value"][1]) == 0, f"{replica}: vmalert fails: {found}"
