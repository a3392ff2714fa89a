"""The API at three replicas, discovered: three targets up on both Prometheus replicas, each
its own instance, and the request-rate panel counts each replica once (the global view, one
Prometheus replica and the sum of the replicas' own rates agree)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from stack import ROOT

from ..conftest import FIGURES, get, query, until
from ..runtimes import NativeStack
from ..test_dashboards import fill
from .conftest import API_REPLICAS, url_of

pytestmark = pytest.mark.integration

JOB = "personal_assistant_api"
BOARD = ROOT / "grafana" / "dashboards" / "api" / "api-overview.json"
PANEL = "Request rate"
RATE = 5  # requests/s sent to each replica
DRIVEN = 40.0  # seconds: more than the panel's 1 m window needs to see every replica


def api_targets(prometheus: str) -> list[dict]:
    targets = get(f"{prometheus}/api/v1/targets", state="active")["data"]["activeTargets"]
    return [t for t in targets if t["labels"]["job"] == JOB and t["labels"]["component"] == "api"]


def panel_expr() -> tuple[str, dict]:
    board = json.loads(BOARD.read_text())
    found = [t["expr"] for p in board["panels"] if p.get("title") == PANEL for t in p["targets"]]
    assert len(found) == 1, f"{BOARD.name}: {PANEL!r} has {len(found)} queries"
    return found[0], board


def drive(url: str, stack: NativeStack) -> subprocess.Popen:
    """The traffic generator at RATE against one replica, for DRIVEN seconds."""
    return subprocess.Popen(
        [sys.executable, "-m", "assistant.traffic", "--url", url, "--rate", str(RATE),
         "--duration", str(DRIVEN), "--token-file", str(stack.api_token_file),
         "--progress", "3600"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def test_three_api_replicas_are_three_targets_each_counted_once(ha: NativeStack) -> None:
    replicas = (ha.prometheus, url_of(ha, "prometheus-2"))
    for prometheus in replicas:
        until(lambda p=prometheus: len([t for t in api_targets(p) if t["health"] == "up"])
              == API_REPLICAS, 60.0, 1.0, f"the API targets up on {prometheus}")  # fmt: skip
        instances = {t["labels"]["instance"] for t in api_targets(prometheus)}
        assert len(instances) == API_REPLICAS, instances
    assert len(ha.api_replicas) == API_REPLICAS
    drivers = [drive(url, ha) for url in ha.api_replicas]
    try:
        time.sleep(DRIVEN)
    finally:
        for driver in drivers:
            driver.terminate()
            driver.wait(30)
    expr, board = panel_expr()
    store = SimpleNamespace(prometheus=url_of(ha, "victoriametrics"))
    at = f"{time.time() - 5:.3f}"  # every sample of the window in the store (remote write)

    def value(where: object, text: str) -> float:
        result = query(where, text, time=at)  # type: ignore[arg-type]
        assert len(result) == 1, f"{text}: {result}"
        return float(result[0]["value"][1])

    filled = fill(store, expr, board)  # type: ignore[arg-type]
    global_view, one_replica = value(store, filled), value(ha, fill(ha, expr, board))
    per_instance = query(store, f"sum by (instance, component) ({filled.removeprefix('sum')})",  # type: ignore[arg-type]
                         time=at)  # fmt: skip
    api = [float(r["value"][1]) for r in per_instance if r["metric"]["component"] == "api"]
    assert len(api) == API_REPLICAS and min(api) > RATE / 2, per_instance
    summed = sum(float(r["value"][1]) for r in per_instance)
    assert abs(global_view - summed) <= 1e-9 * summed, (global_view, summed)
    assert abs(global_view - one_replica) <= 0.1 * one_replica, (global_view, one_replica)
    FIGURES.append(
        f"HA: the API at {API_REPLICAS} replicas: {API_REPLICAS} targets up on both Prometheus "
        f"replicas; the request-rate panel reads {global_view:.2f} req/s from the global view, "
        f"{one_replica:.2f} on one replica, the replicas' own rates "
        f"{' + '.join(f'{r:.2f}' for r in api)} (+ the worker)"
    )
