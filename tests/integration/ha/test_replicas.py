"""The API at three replicas, discovered: three targets up on both Prometheus replicas, each
its own instance, and the request-rate panel counts each replica once: from the global view it
reads what the replicas served (their counters' growth over its window) and the sum of their
own rates."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from stack import ROOT

from ..conftest import FIGURES, get, query, until
from ..runtimes import Stack
from ..test_dashboards import fill
from .conftest import API_REPLICAS, url_of

pytestmark = pytest.mark.integration

JOB = "personal_assistant_api"
BOARD = ROOT / "grafana" / "dashboards" / "api" / "api-overview.json"
PANEL = "Request rate"
RATE = 5  # requests/s sent to each replica
# seconds: the panel's 1 m window then lies in the drive, after each replica's series began
# (MetricsQL's rate() of a series that begins inside the window divides by its own span)
DRIVEN = 90.0


def api_targets(prometheus: str) -> list[dict]:
    targets = get(f"{prometheus}/api/v1/targets", state="active")["data"]["activeTargets"]
    return [t for t in targets if t["labels"]["job"] == JOB and t["labels"]["component"] == "api"]


def panel_expr() -> tuple[str, dict]:
    board = json.loads(BOARD.read_text())
    found = [t["expr"] for p in board["panels"] if p.get("title") == PANEL for t in p["targets"]]
    assert len(found) == 1, f"{BOARD.name}: {PANEL!r} has {len(found)} queries"
    return found[0], board


def drive(url: str, stack: Stack) -> subprocess.Popen:
    """The traffic generator at RATE against one replica, for DRIVEN seconds."""
    return subprocess.Popen(
        [sys.executable, "-m", "assistant.traffic", "--url", url, "--rate", str(RATE),
         "--duration", str(DRIVEN), "--token-file", str(stack.api_token_file),
         "--progress", "3600"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def test_three_api_replicas_are_three_targets_each_counted_once(ha: Stack) -> None:
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
    end = time.time() - 5  # every sample of the window in the store (remote write)

    def value(where: object, text: str, at: float = end) -> float:
        result = query(where, text, time=f"{at:.3f}")  # type: ignore[arg-type]
        assert len(result) == 1, f"{text}: {result}"
        return float(result[0]["value"][1])

    filled = fill(store, expr, board)  # type: ignore[arg-type]
    window = filled.partition("[")[2].partition("]")[0]
    assert window == "1m", filled
    # what was served: the counters' growth over the window (a series that appears in it
    # counts from zero, as its process started it)
    served = filled.removeprefix("sum(rate(").partition("[")[0]
    total = f"sum({served}) or vector(0)"  # none yet: nothing served
    truth = (value(store, total) - value(store, total, end - 60)) / 60
    global_view, one_replica = value(store, filled), value(ha, fill(ha, expr, board))
    per_instance = query(store, f"sum by (instance, component) ({filled.removeprefix('sum')})",  # type: ignore[arg-type]
                         time=f"{end:.3f}")  # fmt: skip
    api = [float(r["value"][1]) for r in per_instance if r["metric"]["component"] == "api"]
    assert len(api) == API_REPLICAS and min(api) > RATE / 2, per_instance
    summed = sum(float(r["value"][1]) for r in per_instance)
    assert abs(global_view - summed) <= 1e-9 * summed, (global_view, summed)
    for where, read in (("the global view", global_view), ("one Prometheus replica", one_replica)):
        assert abs(read - truth) <= 0.1 * truth, f"{where}: {read:.2f} req/s, served {truth:.2f}"
    FIGURES.append(
        f"HA: the API at {API_REPLICAS} replicas: {API_REPLICAS} targets up on both Prometheus "
        f"replicas; the request-rate panel reads {global_view:.2f} req/s from the global view "
        f"and {one_replica:.2f} from one Prometheus replica ({truth:.2f} served), the replicas' "
        f"own {' + '.join(f'{r:.2f}' for r in api)}"
    )
