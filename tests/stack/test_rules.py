"""Runbook links from one place: the rule files and their tests are written without any
runbook_url; the copies Prometheus and promtool read carry the one stack/runbooks.py gives."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stack import ROOT, lint, render, rules, runbooks
from stack.settings import StackError

from .conftest import edit

WRITTEN = [*rules.rule_files(ROOT), *rules.rule_test_files(ROOT)]


def loaded_alerts(root: Path) -> list[dict]:
    return [a for p in rules.rule_files(root, rules.LOADED) for a in rules.alerts(rules.read(p))]


def without_runbook_urls(document: dict) -> dict:
    for rule in rules.alerts(document) if "groups" in document else ():
        del rule["annotations"]["runbook_url"]
    for _, expected in rules.expected_alerts(document):
        del expected["exp_annotations"]["runbook_url"]
    return document


def test_no_written_rule_or_test_types_a_runbook_url() -> None:
    assert len(WRITTEN) == 39  # 12 rule files, 27 test files
    assert [p.name for p in WRITTEN if "runbook_url" in p.read_text()] == []


def test_every_loaded_alert_links_its_page() -> None:
    alerts = loaded_alerts(ROOT)
    assert len(alerts) == 63  # TargetDown three times: the API, any other job, none discovered
    for alert in alerts:
        url = alert["annotations"]["runbook_url"]
        assert url == runbooks.BASE_URL + runbooks.page_name(alert["alert"])
        assert runbooks.page(url).is_file(), url


def test_the_loaded_files_are_the_written_ones_plus_runbook_urls() -> None:
    for path in WRITTEN:
        loaded = without_runbook_urls(rules.read(rules.loaded_path(path, ROOT)))
        assert loaded == rules.read(path), path


def test_an_alert_has_its_own_page_unless_it_shares_one() -> None:
    assert runbooks.page_name("PostgresDown") == "PostgresDown.md"
    assert runbooks.page_name("HostLoadHigh") == "HostCpuAndLoad.md"
    assert runbooks.alert_runbooks()["ApiHighLatencyP99"] == f"{runbooks.BASE_URL}ApiHighLatency.md"


def test_one_base_url_moves_every_link(
    repo_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runbooks, "BASE_URL", "https://runbooks.example.org/assistant/")
    render.write(repo_copy)
    urls = [a["annotations"]["runbook_url"] for a in loaded_alerts(repo_copy)]
    assert all(u.startswith("https://runbooks.example.org/assistant/") for u in urls)
    problems = [p for result in lint.rules(repo_copy, tmp_path) for p in result.problems]
    assert problems == []  # promtool's tests expect the new links too


def test_a_new_alert_needs_a_page_or_a_shared_one(
    repo_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    edit(repo_copy / "prometheus/rules/host.rules.yml", "alert: HostCpuHigh", "alert: HostCpuBusy")
    render.write(repo_copy)
    assert any("HostCpuBusy: runbook" in p for p in rules.alert_problems(repo_copy))
    monkeypatch.setitem(runbooks.SHARED_PAGES, "HostCpuAndLoad.md", ("HostCpuBusy", "HostLoadHigh"))
    render.write(repo_copy)
    assert rules.alert_problems(repo_copy) == []


def test_a_shared_page_naming_no_alert_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(runbooks.SHARED_PAGES, "HostDisk.md", ("HostDiskAlmostFull", "Gone"))
    assert rules.alert_problems(ROOT) == [
        "stack/runbooks.py: SHARED_PAGES['HostDisk.md'] names Gone, not an alert"
    ]


def test_a_written_file_that_is_not_yaml_names_itself(repo_copy: Path) -> None:
    (repo_copy / "prometheus/rules/host.rules.yml").write_text("groups: [\n")
    with pytest.raises(StackError, match=r"host\.rules\.yml: not valid YAML"):
        render.generated(repo_copy)


def test_expressions_stay_block_strings() -> None:
    text = rules.loaded_path(ROOT / "prometheus/rules/recording.rules.yml", ROOT).read_text()
    assert "expr: |\n" in text
    assert yaml.safe_load(text)["groups"]


def test_a_loaded_file_without_its_source_is_drift_and_removed(repo_copy: Path) -> None:
    (repo_copy / "prometheus/rules/host.rules.yml").unlink()
    (repo_copy / "prometheus/rules/tests/host.test.yml").unlink()
    orphans = {repo_copy / rules.LOADED / n for n in ("host.rules.yml", "tests/host.test.yml")}
    assert orphans <= set(render.drift(repo_copy))
    render.write(repo_copy)
    assert not any(p.exists() for p in orphans)


def test_what_a_young_stack_cannot_record_is_the_anomaly_baselines() -> None:
    """Recorded names reading more than a day back through an offset, and those recorded from
    them (the integration tests leave their selectors and panels out)."""
    assert rules.needs_history(ROOT, 86400) == {
        "signal:value:expected",
        "signal:value:spread",
        "signal:value:score",
        "signal:value:upper",
        "signal:value:lower",
        "signal:volume:rate15m",
    }
    assert rules.needs_history(ROOT, 21 * 86400) == set()
