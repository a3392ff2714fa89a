"""The runbooks' sections and the metric names runbooks and panels use
(stack/runbook_checks.py): what counts as a metric name, and what is left alone."""

from __future__ import annotations

import pytest

from stack import runbook_checks
from stack.runbook_checks import SECTIONS, section_problems, unknown

KNOWN = {"pg_up", "sms_cost_total", "http_request_duration_seconds_bucket",
         "job:http_requests:rate5m", "node_memory_MemAvailable_bytes"}  # fmt: skip
LABELS = {"task_type"}


def page(*sections: str) -> str:
    return "# Alert\n\n" + "\n\n".join(f"**{s}.** Some text." for s in sections) + "\n"


def test_a_page_with_every_section_in_order_passes() -> None:
    assert section_problems(page(*SECTIONS)) == []


def test_each_missing_section_is_named() -> None:
    assert section_problems(page("Meaning", "Check", "Fix")) == [
        "no Impact, Verify, Escalate section (**Impact.** at a line's start)"
    ]


def test_a_section_name_inside_a_paragraph_does_not_count() -> None:
    text = page(*SECTIONS).replace("**Verify.**", "Then **Verify.**")
    assert section_problems(text)[0].startswith("no Verify section")


def test_sections_out_of_order_are_caught() -> None:
    [problem] = section_problems(page("Meaning", "Check", "Fix", "Impact", "Verify", "Escalate"))
    assert problem.startswith("sections out of order: Meaning, Check, Fix, Impact")


@pytest.mark.parametrize(
    "text",
    [
        "`pg_up` is 1 again",
        "sum by (le) (rate(http_request_duration_seconds_bucket[5m]))",
        "`job:http_requests:rate5m`",
        "node_memory_MemAvailable_bytes / on() group_left() sms_cost_total",
        "by `task_type` (a label, not a metric)",
        'pg_up{source="sms_queue_age"}',  # a label value
        "see prometheus/rules/slo.rules.yml and $REDIS_URL",
        "query `pg_stat_activity` in psql",  # NOT_METRICS
        "the oauth_tokens table",  # no known metric begins with oauth_
    ],
)
def test_known_names_labels_and_other_words_are_left_alone(text: str) -> None:
    assert unknown(text, KNOWN, LABELS) == []


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("`pg_upp` is 1", "pg_upp"),
        ("rate(sms_costs_total[5m])", "sms_costs_total"),
        ("`job:http_requests:rate1m`", "job:http_requests:rate1m"),
        ("node_memory_MemFree_bytes", "node_memory_MemFree_bytes"),
        ("the pool (pg_connection_pool_checked_out) is full", "pg_connection_pool_checked_out"),
    ],
)  # fmt: skip
def test_a_name_of_a_known_family_that_nothing_produces_is_caught(text: str, name: str) -> None:
    assert unknown(text, KNOWN, LABELS) == [name]


def test_the_repository_runbooks_and_panels_name_only_metrics_that_exist() -> None:
    sections, names = runbook_checks.runbook_problems()
    assert (sections, names, runbook_checks.panel_problems()) == ([], [], [])


def test_an_exporter_metric_a_runbook_names_counts_as_read() -> None:
    named = runbook_checks.runbook_metrics()
    assert "prometheus_tsdb_storage_blocks_bytes" in named  # HostDisk.md, no rule reads it
    assert "pg_stat_activity" not in named
