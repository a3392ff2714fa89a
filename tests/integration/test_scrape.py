"""What Prometheus scrapes from the running stack."""

from __future__ import annotations

import pytest

from stack.catalog import SPECIFIED
from stack.producers import EXPOSED

from .conftest import get, query, until
from .runtimes import Stack

pytestmark = pytest.mark.integration

SPEC_METRICS = SPECIFIED
TRAFFIC_WAIT = 90.0


def test_the_specification_lists_30_metrics() -> None:
    assert len(SPEC_METRICS) == len(set(SPEC_METRICS)) == 30


def test_every_scrape_target_is_up(stack: Stack) -> None:
    targets = get(f"{stack.prometheus}/api/v1/targets", state="active")["data"]["activeTargets"]
    jobs = {t["labels"]["job"] for t in targets}
    assert {"personal_assistant_api", "postgres", "redis", "node", "prometheus",
            "alertmanager"} <= jobs  # fmt: skip
    down = [(t["labels"]["job"], t["scrapeUrl"], t["lastError"]) for t in targets
            if t["health"] != "up"]  # fmt: skip
    assert not down


@pytest.mark.parametrize("name", SPEC_METRICS)
def test_every_specified_metric_has_data_after_the_traffic_mix(stack: Stack, name: str) -> None:
    # a histogram is stored as _bucket/_sum/_count, a counter under its own name
    selector = f'{{__name__=~"{name}|{name}_bucket|{name}_count|{name}_sum"}}'
    found = until(
        lambda: query(stack, f"count({selector})"), TRAFFIC_WAIT, 1.0, f"{name} has no data"
    )
    assert float(found[0]["value"][1]) > 0


def test_the_catalogs_exporter_metrics_come_from_the_jobs_it_names(stack: Stack) -> None:
    """stack/producers.py EXPOSED against the running targets: a listed metric the stack has
    comes (at least) from the listed job (a metric without data is other tests' concern)."""
    for job, names in EXPOSED.items():
        found = query(stack, f'count by (__name__, job) ({{__name__=~"{"|".join(names)}"}})')
        elsewhere = {s["metric"]["__name__"] for s in found} - {
            s["metric"]["__name__"] for s in found if s["metric"].get("job") == job
        }
        assert not elsewhere, f"not exposed by job {job!r}: {sorted(elsewhere)}"
