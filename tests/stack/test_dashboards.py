"""What the dashboards must get right beyond lint's checks, read from the generated files:
rate windows of a slower job, counts over the alerts' windows, the burn-rate lines, units."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from stack import ROOT, producers
from stack.dashboards.shared import scrape_interval
from stack.promql import metric_names, seconds

BOARDS = sorted((ROOT / "grafana" / "dashboards").rglob("*.json"))


def targets(path: Path) -> list[tuple[dict, dict]]:
    board = json.loads(path.read_text())
    return [(panel, t) for panel in board["panels"] for t in panel.get("targets", [])]


def own_intervals() -> dict[str, float]:
    """Each metric scraped by a job with its own, longer scrape_interval: that interval."""
    found = {}
    for job in producers.scrape_targets():
        interval = scrape_interval(job)
        if interval:
            found |= {
                name: seconds(interval)
                for name, p in producers.produced().items()
                if f"(job `{job}`)" in p.source
            }
    return found


def test_a_slower_jobs_queries_step_at_its_scrape_interval() -> None:
    """Grafana's $__rate_interval is four times the query's min step (else the datasource's
    timeInterval, 1 s in dev): a 5 s job needs its step, or a rate sees one sample."""
    slower = own_intervals()
    assert slower, "no job with its own scrape_interval: the test checks nothing"
    checked = 0
    for path in BOARDS:
        for panel, target in targets(path):
            needs = [slower[n] for n in metric_names(target["expr"]) if n in slower]
            if needs:
                checked += 1
                where = f"{path.name} {panel['title']!r}"
                assert seconds(target.get("interval", "0s")) >= max(needs), where
    assert checked >= 8


def test_no_panel_counts_increase_over_a_grafana_interval() -> None:
    """increase over $__rate_interval, plotted every $__interval, counts each event in several
    points: counts are taken over a fixed window (the alert's) or shown as rates."""
    for path in BOARDS:
        for panel, target in targets(path):
            assert not re.search(r"increase\([^)]*\[\$__", target["expr"]), panel["title"]


def slo_burn_rates() -> set[float]:
    """The burn-rate factors the SLO alerts compare with (a bare budget: 1)."""
    text = (ROOT / "prometheus" / "rules" / "slo.rules.yml").read_text()
    factors = {float(f) for f in re.findall(r"\(([\d.]+) \* \(1 - slo:objective", text)}
    bare = re.search(r"group_left\(\) \(1 - slo:objective", text)
    return factors | ({1.0} if bare else set())


def test_the_burn_rate_panels_draw_the_alerts_burn_rates() -> None:
    assert slo_burn_rates() == {14.4, 6.0, 3.0, 1.0}
    board = json.loads((ROOT / "grafana/dashboards/slo/slo.json").read_text())
    burn = [p for p in board["panels"] if p["title"].endswith("burn rate")]
    assert len(burn) == 2
    for panel in burn:
        defaults = panel["fieldConfig"]["defaults"]
        lines = {s["value"] for s in defaults["thresholds"]["steps"] if s["value"] is not None}
        assert lines == slo_burn_rates(), panel["title"]
        assert defaults["custom"]["thresholdsStyle"]["mode"] != "off"


@pytest.mark.parametrize(
    ("metric", "unit"), [("sms_cost_total", "currency"), ("node_disk_read_bytes_total", "Bps"),
                         ("node_memory_MemAvailable_bytes", "bytes")],
)  # fmt: skip
def test_a_panel_shows_the_metric_in_its_unit(metric: str, unit: str) -> None:
    units = [
        panel["fieldConfig"]["defaults"]["unit"]
        for path in BOARDS
        for panel, target in targets(path)
        if panel["type"] == "timeseries" and metric in metric_names(target["expr"])
    ]
    assert units and all(u.startswith(unit) for u in units), units


def test_the_api_overview_has_an_error_ratio_per_endpoint() -> None:
    board = json.loads((ROOT / "grafana/dashboards/api/api-overview.json").read_text())
    [panel] = [p for p in board["panels"] if p["title"] == "5xx ratio by endpoint"]
    [target] = panel["targets"]
    assert panel["fieldConfig"]["defaults"]["unit"] == "percentunit"
    assert target["expr"].count("sum by (method, endpoint)") == 3  # errors, zero fill, total
