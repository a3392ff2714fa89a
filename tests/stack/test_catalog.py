"""The metrics catalog (docs/metrics.md): producers read from what produces each metric,
alerts followed through recording rules, and the test files that mention each metric."""

from __future__ import annotations

from pathlib import Path

import pytest

from stack import ROOT, catalog, producers, runbook_checks

from .conftest import edit


@pytest.fixture(scope="module")
def entries() -> dict[str, catalog.Entry]:
    return catalog.entries()


def test_a_custom_query_is_produced_by_the_job_that_scrapes_its_exporter(
    entries: dict[str, catalog.Entry],
) -> None:
    e = entries["long_transactions_oldest_seconds"]
    assert (e.kind, e.labels) == ("gauge", ["datname"])
    assert e.source == (
        "postgres-exporter (job `postgres`): custom query in exporters/postgres/queries.yml"
    )


def test_exporter_and_prometheus_metrics_name_their_job(
    entries: dict[str, catalog.Entry],
) -> None:
    assert entries["pg_up"].source == "postgres-exporter (job `postgres`)"
    assert entries["node_load5"].source == "node-exporter (job `node`)"
    assert entries["prometheus_tsdb_head_series"].source == "Prometheus (job `prometheus`)"
    assert entries["up"].source == "Prometheus, for every scrape target"
    assert entries["api_error_rate"].source == "recording rule (recording.rules.yml)"
    assert entries["http_requests_total"].source == "app_metrics (HTTP middleware)"


def test_an_alert_reading_a_recorded_name_uses_what_that_rule_reads(
    entries: dict[str, catalog.Entry],
) -> None:
    cpu = entries["node_cpu_seconds_total"].alerts
    assert cpu["HostLoadHigh"] == set()  # read directly
    assert cpu["HostCpuHigh"] == {"system_cpu_usage_percent"}
    # two recording rules deep: job:slo_... reads job:http_requests..., which reads the counter
    requests = entries["http_requests_total"].alerts
    assert "job:slo_availability_errors:ratio_rate1h" in requests["ApiAvailabilityBudgetBurnFast"]
    assert "ApiHighLatencyP95" in entries["http_request_duration_seconds"].alerts


def test_tested_in_lists_the_files_that_mention_a_metric(
    entries: dict[str, catalog.Entry],
) -> None:
    assert "prometheus/rules/tests/down.test.yml" in entries["pg_up"].tests
    assert "tests/unit/test_http.py" in entries["http_request_duration_seconds"].tests
    # `up` counts as a selector only: "make up" in tests/stack/test_make.py is no mention
    assert "tests/integration/test_persistence.py" in entries["up"].tests
    assert "tests/stack/test_make.py" not in entries["up"].tests


def test_a_new_custom_query_column_appears_with_its_job(repo_copy: Path) -> None:
    edit(repo_copy / "exporters/postgres/queries.yml", "    - dead_rows:\n",
         "    - vacuum_count:\n        usage: COUNTER\n        description: Vacuums\n"
         "    - dead_rows:\n")  # fmt: skip
    made = producers.custom_queries(repo_copy, producers.scrape_targets(repo_copy))
    assert made["assistant_tables_vacuum_count"] == producers.Produced(
        "counter", ["table"], made["assistant_tables_dead_rows"].source
    )


def test_a_listed_job_that_is_not_scraped_is_caught(
    entries: dict[str, catalog.Entry], monkeypatch: pytest.MonkeyPatch
) -> None:
    named = frozenset(runbook_checks.runbook_metrics())  # what the runbooks read besides
    monkeypatch.setitem(producers.EXPOSED, "grafana", ("grafana_build_info",))
    assert catalog.producer_problems(entries, named=named) == [
        "stack/producers.py EXPOSED['grafana']: grafana_build_info is read by no rule, "
        "dashboard or runbook"
    ]
    monkeypatch.setitem(producers.EXPOSED, "mysql", ())
    assert (
        catalog.producer_problems(entries, named=named)[-1]
        == "stack/producers.py EXPOSED: no scrape job 'mysql'"
    )


def test_the_catalog_lists_what_each_metric_is_tested_in() -> None:
    page = (ROOT / "docs" / "metrics.md").read_text()
    assert "| tested in |" in page
    assert "HostCpuHigh (via `system_cpu_usage_percent`)" in page


def test_an_exporter_metric_only_a_runbook_names_is_read(entries: dict[str, catalog.Entry]) -> None:
    unread = "stack/producers.py EXPOSED['prometheus']: prometheus_tsdb_storage_blocks_bytes"
    assert any(p.startswith(unread) for p in catalog.producer_problems(entries))
    named = frozenset(runbook_checks.runbook_metrics())
    assert catalog.producer_problems(entries, named=named) == []
