"""`make lint` runs the real tools: the repository passes, and each kind of mistake is caught
with the tool's own message. Cases are data: a file, a text to replace, the check that must
fail and a piece of the message it must show."""

from __future__ import annotations

import io
from pathlib import Path
from typing import NamedTuple

import pytest

from stack import ROOT, lint, render
from stack.runbooks import BASE_URL

from .conftest import edit


class Mistake(NamedTuple):
    file: str
    old: str
    new: str
    check: str  # a function of stack.lint.CHECKS
    message: str


MISTAKES = {
    "scrape timeout over the interval": Mistake(
        "prometheus/prometheus.yml", "scrape_timeout: 4s", "scrape_timeout: 40s",
        "prometheus_configs", "scrape timeout greater than scrape interval",
    ),
    "a field Prometheus 2.42 rejects": Mistake(
        "prometheus/prometheus.yml", "  - job_name: redis\n",
        "  - job_name: redis\n    scrape_protocols: [PrometheusText0.0.4]\n",
        "prometheus_configs", "field scrape_protocols not found",
    ),
    "a rule that does not parse": Mistake(
        "prometheus/rules/database.rules.yml", "(pg_up[45s]) == 0", "(pg_up[45s]) ==",
        "rules", "parse error",
    ),
    "a rule test that expects the wrong value": Mistake(
        "prometheus/rules/tests/down.test.yml", "(pg_up = 0) for", "(pg_up = 1) for",
        "rules", "FAILED",
    ),
    "a for: shorter than three scrapes of its job": Mistake(
        "prometheus/rules/database.rules.yml",
        "== 0\n        for: 1m", "== 0\n        for: 10s",
        "alert_windows",
        "PostgresDown: for: 10s is shorter than 3 scrapes of postgres in dev (15 s)",
    ),
    "an event alert whose range is shorter than three scrapes": Mistake(
        "prometheus/rules/database.rules.yml",
        'increase(redis_errors_total{err="OOM"}[5m])',
        'increase(redis_errors_total{err="OOM"}[30s])',
        "alert_windows",
        "RedisRejectedWrites: no for: and a range of 30 s is shorter than 3 scrapes of redis in "
        "stage (45 s)",
    ),
    "a latency threshold inside a histogram bucket": Mistake(
        "prometheus/rules/api.rules.yml",
        "job_endpoint_le:http_request_duration_seconds_bucket:rate5m)) > 2.5",
        "job_endpoint_le:http_request_duration_seconds_bucket:rate5m)) > 2",
        "alert_windows", "ApiHighLatencyP99: histogram_quantile threshold 2 is not a bucket of "
        "http_request_duration_seconds",
    ),
    "an SLO on a le that is no bucket": Mistake(
        "prometheus/rules/slo.rules.yml", 'bucket{le="0.5"}[5m]', 'bucket{le="0.4"}[5m]',
        "alert_windows", 'job:slo_latency_slow:ratio_rate5m: le="0.4" is not a bucket of '
        "http_request_duration_seconds",
    ),
    "an alert without its runbook": Mistake(
        "prometheus/rules/database.rules.yml",
        "alert: RedisRejectedWrites", "alert: RedisOomWrites",
        "rules", f"RedisOomWrites: runbook {BASE_URL}RedisOomWrites.md does not exist",
    ),
    "an alert whose runbook is not under the runbook address": Mistake(
        "prometheus/generated/rules/database.rules.yml",
        f"{BASE_URL}RedisDown.md", "runbooks/RedisDown.md",
        "rules", "RedisDown: runbook runbooks/RedisDown.md is not a page under",
    ),
    "a runbook_url typed into a rule": Mistake(
        "prometheus/rules/database.rules.yml",
        "        annotations:\n          summary: \"Redis behind",
        "        annotations:\n          runbook_url: https://wiki/RedisDown\n"
        "          summary: \"Redis behind",
        "rules", "database.rules.yml: RedisDown: runbook_url typed; `make generate` stamps it",
    ),
    "a runbook_url typed into a rule test": Mistake(
        "prometheus/rules/tests/down.test.yml", "            exp_annotations:\n",
        "            exp_annotations:\n              runbook_url: https://wiki/Watchdog\n",
        "rules", "down.test.yml: Watchdog: runbook_url typed; `make generate` stamps it",
    ),
    "an alert without a severity": Mistake(
        "prometheus/rules/platform.rules.yml", "          severity: none\n", "",
        "rules", "Watchdog: no severity label",
    ),
    "a metric read without a producer": Mistake(
        "prometheus/rules/database.rules.yml", "(redis_up[45s]) == 0", "(redis_alive[45s]) == 0",
        "metrics_used", "redis_alive: read by a rule or dashboard, produced by nothing known",
    ),
    "a runbook without its Verify section": Mistake(
        "runbooks/RedisDown.md", "**Verify.**", "**Afterwards.**",
        "runbooks_and_panels", "runbooks/RedisDown.md: no Verify section",
    ),
    "a runbook whose Impact comes after its Fix": Mistake(
        "runbooks/RedisDown.md", "**Impact.**", "**Fix.** Later.\n\n**Impact.**",
        "runbooks_and_panels", "runbooks/RedisDown.md: sections out of order",
    ),
    "a runbook naming a metric nothing produces": Mistake(
        "runbooks/PostgresDown.md", "`pg_up`", "`pg_is_up`",
        "runbooks_and_panels", "runbooks/PostgresDown.md: names pg_is_up, which no app, "
        "exporter or recording rule produces",
    ),
    "a panel description naming a metric nothing produces": Mistake(
        "grafana/dashboards/infrastructure/host.json", "(system_cpu_usage_percent)",
        "(system_cpu_busy_percent)", "runbooks_and_panels",
        "host.json panel 'CPU busy': names system_cpu_busy_percent",
    ),
    "a panel query reading a metric nothing produces": Mistake(
        "grafana/dashboards/infrastructure/redis.json", "max(redis_memory_used_bytes)",
        "max(redis_memory_use_bytes)", "runbooks_and_panels",
        "redis.json panel 'Memory used': names redis_memory_use_bytes",
    ),
    "a route to an undefined receiver": Mistake(
        "alertmanager/alertmanager.yml", "- receiver: backend", "- receiver: nobody",
        "alertmanager_configs", 'undefined receiver "nobody"',
    ),
    "a routing case that no longer holds": Mistake(
        "alertmanager/tests/routes.yml", "receivers: [oncall, backend]", "receivers: [backend]",
        "alertmanager_configs", "expected ['backend']",
    ),
    "a field Alertmanager 0.25 rejects": Mistake(
        "alertmanager/receivers/prod.yml", "      - url: \"${ALERTMANAGER_WATCHDOG_URL}\"\n",
        "      - url: \"${ALERTMANAGER_WATCHDOG_URL}\"\n        timeout: 10s\n",
        "alertmanager_configs", "field timeout not found",
    ),
    "a misspelt Compose key": Mistake(
        "compose/compose.yaml", "    image: ${POSTGRES_IMAGE:", "    imagee: ${POSTGRES_IMAGE:",
        "compose_files", "imagee",
    ),
    "a Compose port that is not a list": Mistake(
        "compose/compose.dev.yaml", 'ports: ["127.0.0.1:${RECEIVER_PORT:-9095}:9095"]',
        "ports: 9095", "compose_files", "9095 is not of type 'array'",
    ),
    "trailing spaces": Mistake(
        "exporters/postgres/queries.yml", "long_transactions:\n", "long_transactions:   \n",
        "yaml_files", "trailing-spaces",
    ),
    "a panel that names an alert without its runbook link": Mistake(
        "grafana/dashboards/api/api-overview.json", "Alert: ApiHighErrorRatio above",
        "Alert: ApiHighLatencyP95 above", "dashboards",
        "panel 'Error ratio (5xx)': names ApiHighLatencyP95 but does not link its runbook",
    ),
    "a panel link to a missing runbook": Mistake(
        "grafana/dashboards/api/api-overview.json", "runbooks/ApiHighErrorRatio.md",
        "runbooks/ApiErrors.md", "dashboards",
        f"panel 'Error ratio (5xx)': link {BASE_URL}ApiErrors.md is not a runbook page",
    ),
    "a panel without a description": Mistake(
        "grafana/dashboards/api/api-overview.json",
        '"description": "Requests being served right now.",', "",
        "dashboards", "panel 'In progress': no description",
    ),
    "a panel on another datasource": Mistake(
        "grafana/dashboards/api/api-overview.json", '"uid": "prometheus"', '"uid": "${DS}"',
        "dashboards", "datasource is not uid 'prometheus'",
    ),
    "overlapping panels": Mistake(
        "grafana/dashboards/api/api-overview.json", '"x": 18,', '"x": 10,',
        "dashboards", "overlaps panel",
    ),
    "a query that does not parse": Mistake(
        "grafana/dashboards/api/api-overview.json", "sum by (status) (", "sum by (status (",
        "dashboards", "panel 'Status mix'",
    ),
    "a service that runs as root": Mistake(
        "compose/compose.dev.yaml", 'user: "65534:65534"', "user: root",
        "containers", "receiver: runs as root (user: 'root'); or give the reason in "
        "x-hardening-exception.user",
    ),
    "a writable root file system": Mistake(
        "compose/compose.dev.yaml", "x-hardening: &hardening\n  read_only: true\n",
        "x-hardening: &hardening\n", "containers",
        "traffic: its root file system is writable (read_only: true)",
    ),
    "a capability added back without a reason": Mistake(
        "compose/compose.yaml", "    user: redis", "    cap_add: [NET_ADMIN]\n    user: redis",
        "containers", "redis: cap_add NET_ADMIN without a reason",
    ),
    "resource limits Compose v2 refuses beside pids_limit": Mistake(
        "compose/compose.prod.yaml", '{cpus: "0.50", mem_limit: 256M}',
        '{deploy: {resources: {limits: {cpus: "0.50", memory: 256M}}}}', "containers",
        "alertmanager: deploy.resources beside pids_limit: Compose v2 then demands",
    ),
    "a healthcheck on another port than the service exposes": Mistake(
        "compose/compose.yaml", "          http://127.0.0.1:9100/", "          http://127.0.0.1:9101/",
        "ports_agree", "compose/compose.yaml: node-exporter: its healthcheck fetches port 9101, "
        "but node-exporter exposes 9100",
    ),
    "a published port the service does not expose": Mistake(
        "compose/compose.dev.yaml", "PROMETHEUS_PORT:-9090}:9090", "PROMETHEUS_PORT:-9090}:9091",
        "ports_agree", "compose/compose.dev.yaml: prometheus: publishes container port 9091, "
        "but prometheus exposes 9090",
    ),
    "a scrape target on another port than the service exposes": Mistake(
        "prometheus/prometheus.yml", "node-exporter:9100", "node-exporter:9101",
        "ports_agree", "prometheus/prometheus.yml: node-exporter: job node scrapes node-exporter "
        "on port 9101, but node-exporter exposes 9100",
    ),
    "Prometheus' lifecycle API": Mistake(
        "compose/compose.yaml", "      - --web.config.file=/etc/prometheus/web.yml\n",
        "      - --web.config.file=/etc/prometheus/web.yml\n      - --web.enable-lifecycle\n",
        "web_authentication", "prometheus: --web.enable-lifecycle lets anyone who reaches it stop",
    ),
    "Alertmanager without authentication": Mistake(
        "compose/compose.yaml", "      - --web.config.file=/etc/alertmanager/web.yml\n", "",
        "web_authentication", "alertmanager: no --web.config.file=",
    ),
    "a healthcheck without the monitoring user": Mistake(
        "compose/compose.yaml",
        '--header "Authorization: $$(cat /run/secrets/monitoring_authorization)"', "",
        "web_authentication", "postgres-exporter: its healthcheck sends no Authorization header",
    ),
    "a scrape of an authenticated exporter without the user": Mistake(
        "prometheus/prometheus.yml", "  - job_name: node\n    basic_auth: *monitoring\n",
        "  - job_name: node\n", "web_authentication",
        "job node: scrapes node-exporter without the monitoring user (basic_auth)",
    ),
    "a field Prometheus 2.42 rejects in the HA changes": Mistake(
        "prometheus/ha.yml", "  alert_relabel_configs:\n",
        "  alert_relabel_configs:\n    - {action: labeldrop, regex: replica, limit: 1}\n",
        "prometheus_configs", "field limit not found",
    ),
    "HA retention shorter than a rule's range": Mistake(
        "compose/env/prod.env", "HA_RETENTION_TIME=4d", "HA_RETENTION_TIME=2d",
        "ha_retention", "compose/env/prod.env: HA_RETENTION_TIME=2d does not cover "
        "prometheus/generated/rules/slo.rules.yml",
    ),
    "a replica loading a rule that reads further back than it keeps": Mistake(
        "prometheus/ha.yml", "  - ../rules/api.rules.yml\n",
        "  - ../rules/anomaly.rules.yml\n  - ../rules/api.rules.yml\n", "ha_retention",
        "compose/env/dev.env: HA_RETENTION_TIME=4d does not cover "
        "prometheus/generated/rules/anomaly.rules.yml",
    ),
    "an Alertmanager peer's turn after the next group tick": Mistake(
        "compose/env/dev.env", "ALERTMANAGER_PEER_TIMEOUT=2s", "ALERTMANAGER_PEER_TIMEOUT=3s",
        "alertmanager_turns", "alertmanager: the last of 3 peers sends 6 s after a tick "
        "(--cluster.peer-timeout=3s), not before GROUP_INTERVAL=5s",
    ),
    "an Alertmanager peer at the default peer timeout in dev": Mistake(
        "compose/compose.ha.yaml", "      - --cluster.peer-timeout=${ALERTMANAGER_PEER_TIMEOUT:?",
        "      - --cluster.peer-timeout-was=${ALERTMANAGER_PEER_TIMEOUT:?",
        "alertmanager_turns", "sends 30 s after a tick (--cluster.peer-timeout=15s)",
    ),
    "single retention shorter than the anomaly baselines": Mistake(
        "compose/env/stage.env", "\nRETENTION_TIME=22d", "\nRETENTION_TIME=7d",
        "single_retention", "compose/env/stage.env: RETENTION_TIME=7d does not cover "
        "prometheus/generated/rules/anomaly.rules.yml",
    ),
    "a rule file evaluated by the replicas and by vmalert": Mistake(
        "prometheus/ha.yml", "  - ../rules/api.rules.yml\n",
        "  - ../rules/anomaly.rules.yml\n  - ../rules/api.rules.yml\n", "global_rules",
        "anomaly.rules.yml: evaluated by the replicas and by vmalert (twice)",
    ),
    "a rule file evaluated by neither": Mistake(
        "prometheus/ha.yml", "  - ../rules/api.rules.yml\n", "", "global_rules",
        "api.rules.yml: evaluated by neither the replicas (rule_files) nor vmalert (-rule)",
    ),
    "vmalert notifying one peer only": Mistake(
        "compose/compose.ha.yaml", "      - -notifier.url=http://alertmanager-3:9093\n", "",
        "global_rules", "vmalert: -notifier.url ['http://alertmanager:9093', "
        "'http://alertmanager-2:9093'] is not every peer",
    ),
    "vmalert querying the store without the monitoring user": Mistake(
        "compose/compose.ha.yaml",
        "      - -datasource.basicAuth.passwordFile=/run/secrets/monitoring_password\n", "",
        "global_rules", "vmalert: -datasource.url without the monitoring user",
    ),
    "vmalert's alerts without the replicas' labels": Mistake(
        "compose/compose.ha.yaml", "-external.label=env=${STACK_ENV:?no ENV}",
        "-external.label=environment=${STACK_ENV:?no ENV}", "global_rules",
        "vmalert: -external.label {'environment': 'dev'} is not the replicas' labels "
        "{'env': 'dev'}",
    ),
    "a rule vmalert's MetricsQL parser refuses": Mistake(
        "prometheus/rules/anomaly.rules.yml", "expr: vector(0.1), labels: {signal: request_rate}",
        "expr: 'vector(0.1', labels: {signal: request_rate}", "global_rules",
        "-dryRun",
    ),
    "a peer gossiping with another on a port it does not expose": Mistake(
        "compose/compose.ha.yaml", "--cluster.peer=alertmanager-2:9094",
        "--cluster.peer=alertmanager-2:9095", "ports_agree",
        "compose/compose.ha.yaml: alertmanager-2: its command addresses alertmanager-2 on port "
        "9095, but alertmanager-2 exposes 9093, 9094",
    ),
    "a replica without authentication": Mistake(
        "compose/compose.ha.yaml", "      - --web.config.file=/etc/prometheus/web.yml\n"
        "      - --web.external-url=${PROMETHEUS_2", "      - --web.external-url=${PROMETHEUS_2",
        "web_authentication", "prometheus-2: no --web.config.file=",
    ),
    "a hand-edited generated file": Mistake(
        "prometheus/generated/prometheus.stage.yml", "job_name: node", "job_name: host",
        "generated_files", "prometheus/generated/prometheus.stage.yml differs",
    ),
}  # fmt: skip


def test_a_hand_edited_dashboard_is_drift(repo_copy: Path) -> None:
    edit(repo_copy / "grafana/dashboards/business/business.json", "Active sessions", "Sessions")
    assert render.drift(repo_copy) == [repo_copy / "grafana/dashboards/business/business.json"]


def test_the_repository_passes_every_check() -> None:
    out = io.StringIO()
    assert lint.lint(out=out) == 0, out.getvalue()
    assert "FAIL" not in out.getvalue()
    assert out.getvalue().count("  ok   ") >= 19


@pytest.fixture(scope="module")
def generated() -> set[Path]:
    """The generated files, relative: the same in every copy of the repository."""
    return {p.relative_to(ROOT) for p in render.generated(ROOT)}


@pytest.mark.parametrize("name", MISTAKES)
def test_a_mistake_is_caught_with_the_tools_message(
    name: str, repo_copy: Path, tmp_path: Path, generated: set[Path]
) -> None:
    mistake = MISTAKES[name]
    edit(repo_copy / mistake.file, mistake.old, mistake.new)
    if mistake.check != "generated_files" and Path(mistake.file) not in generated:
        render.write(repo_copy)  # what `make generate` would do after editing a source
    check = getattr(lint, mistake.check)
    work = tmp_path / "work"
    work.mkdir()
    problems = [p for result in lint._guarded(check, repo_copy, work) for p in result.problems]
    assert problems, f"{mistake.check} passed despite: {name}"
    assert mistake.message in "\n".join(problems)


def test_a_duplicate_dashboard_uid_is_caught(repo_copy: Path, tmp_path: Path) -> None:
    folder = repo_copy / "grafana" / "dashboards"
    (folder / "copy").mkdir()
    (folder / "copy" / "again.json").write_text((folder / "api" / "api-overview.json").read_text())
    [result] = lint.dashboards(repo_copy, tmp_path)
    assert any("uid 'assistant-api-overview' already used" in p for p in result.problems)


def test_an_app_metric_used_nowhere_needs_a_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from stack import catalog

    monkeypatch.delitem(catalog.ADHOC, "health_check_failures_total")
    result, producers = lint.metrics_used(ROOT, tmp_path)
    assert producers.problems == []
    assert result.problems == [
        "health_check_failures_total: used nowhere; use it, or give the reason in "
        "stack/catalog.py ADHOC"
    ]


def test_a_service_may_go_without_a_setting_when_the_file_says_why(
    repo_copy: Path, tmp_path: Path
) -> None:
    compose = repo_copy / "compose" / "compose.yaml"
    edit(compose, "    user: redis", "    read_only: false\n    user: redis")
    [dev, *_] = lint.containers(repo_copy, tmp_path)
    assert dev.problems == [
        "redis: its root file system is writable (read_only: true); or give the reason in "
        "x-hardening-exception.read_only"
    ]
    reason = '    x-hardening-exception: {read_only: "it must write its root"}\n'
    edit(compose, "    read_only: false\n", "    read_only: false\n" + reason)
    assert all(not c.problems for c in lint.containers(repo_copy, tmp_path))
