"""Stack health: Prometheus, Alertmanager and the scrape targets themselves."""

from __future__ import annotations

from typing import Any

from .shared import dashboard, graph, stat

PATH = "stack/stack-health.json"


def build() -> dict[str, Any]:
    panels = [
        stat(
            "Targets up",
            "sum(up) / count(up)",
            "percentunit",
            "Share of scrape targets up. Alert: TargetDown.",
        ),
        stat(
            "Head series",
            "max(prometheus_tsdb_head_series)",
            "short",
            "Series in Prometheus' head block: grows with labels, not with traffic.",
        ),
        stat(
            "Firing alerts",
            'sum(alertmanager_alerts{state="active"})',
            "short",
            "Alerts Alertmanager holds active (the Watchdog always).",
        ),
        stat(
            "Config reloads OK",
            "min(prometheus_config_last_reload_successful) * "
            "min(alertmanager_config_last_reload_successful)",
            "bool",
            "1 when both Prometheus' and Alertmanager's last reload succeeded. Alerts: "
            "PrometheusConfigReloadFailed, AlertmanagerConfigReloadFailed.",
        ),
        graph(
            "Targets up by job",
            "short",
            "Scrape targets up per job.",
            ("sum by (job) (up)", "{{job}}"),
        ),
        graph(
            "Scrape duration",
            "s",
            "How long each target's scrape takes (postgres: at most its 4 s timeout).",
            ("max by (job) (scrape_duration_seconds)", "{{job}}"),
        ),
        graph(
            "Rule evaluation",
            "s",
            "Duration of each rule group's last evaluation. Alert: "
            "PrometheusRuleEvaluationFailures.",
            ("max by (rule_group) (prometheus_rule_group_last_duration_seconds)", "{{rule_group}}"),
        ),
        graph(
            "Notifications",
            "ops",
            "Alerts sent by Prometheus and notifications sent by "
            "Alertmanager per integration, per second. Alerts: PrometheusNotificationsFailing, "
            "AlertmanagerNotificationsFailing.",
            ("sum(rate(prometheus_notifications_sent_total[$__rate_interval]))", "prometheus"),
            (
                "sum by (integration) (rate(alertmanager_notifications_total[$__rate_interval]))",
                "alertmanager {{integration}}",
            ),
        ),
        graph(
            "Samples ingested",
            "short",
            "Samples appended to Prometheus' head per second.",
            (
                "sum(rate(prometheus_tsdb_head_samples_appended_total[$__rate_interval]))",
                "samples/s",
            ),
            width=24,
        ),
    ]
    return dashboard(
        "assistant-stack-health",
        "Stack health",
        "Prometheus, Alertmanager and the scrape targets themselves.",
        "stack",
        panels,
    )
