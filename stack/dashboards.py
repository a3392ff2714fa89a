"""The Grafana dashboards, as code: `make generate` writes grafana/dashboards/<folder>/*.json
from here and `make lint` fails when a committed file differs.

Every panel gets the provisioned datasource (uid ``prometheus``), a unit and a description;
a panel whose description names alerts links their runbooks (the alerts' own runbook_url).
Panels are laid out left to right in rows of 24 columns, so none overlap.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import runbooks

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
API = 'job="personal_assistant_api"'


def runbook_links(description: str, alert_runbooks: dict[str, str]) -> list[dict[str, Any]]:
    """One link per runbook of the alerts a description names, titled with those alerts."""
    by_url: dict[str, list[str]] = {}
    for alert in runbooks.named_alerts(description, alert_runbooks):
        by_url.setdefault(alert_runbooks[alert], []).append(alert)
    return [
        {"title": f"Runbook: {', '.join(alerts)}", "url": url, "targetBlank": True}
        for url, alerts in by_url.items()
    ]


@dataclass
class Panel:
    title: str
    kind: str  # stat, timeseries, table, gauge
    unit: str
    description: str
    queries: list[tuple[str, str]]  # (expression, legend)
    width: int = 12
    height: int = 8
    options: dict[str, Any] = field(default_factory=dict)
    instant: bool = False


def stat(title: str, expr: str, unit: str, description: str, width: int = 6) -> Panel:
    return Panel(title, "stat", unit, description, [(expr, "")], width, 4)


def graph(title: str, unit: str, description: str, *queries: tuple[str, str], **kw: Any) -> Panel:
    return Panel(title, "timeseries", unit, description, list(queries), **kw)


def _render(
    uid: str,
    title: str,
    description: str,
    tags: list[str],
    panels: list[Panel],
    variables: list[dict[str, Any]],
) -> dict[str, Any]:
    out, x, y, row_height = [], 0, 0, 0
    alert_runbooks = runbooks.alert_runbooks()
    for number, p in enumerate(panels, 1):
        if x + p.width > 24:
            x, y, row_height = 0, y + row_height, 0
        targets = []
        for index, (expr, legend) in enumerate(p.queries):
            target = {
                "refId": chr(65 + index),
                "datasource": DATASOURCE,
                "expr": expr,
                "legendFormat": legend,
            }
            if p.instant:
                target |= {"instant": True, "format": "table"}
            targets.append(target)
        out.append(
            {
                "id": number,
                "type": p.kind,
                "title": p.title,
                "description": p.description,
                "links": runbook_links(p.description, alert_runbooks),
                "datasource": DATASOURCE,
                "gridPos": {"x": x, "y": y, "w": p.width, "h": p.height},
                "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
                "options": p.options,
                "targets": targets,
            }
        )
        x, row_height = x + p.width, max(row_height, p.height)
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["assistant", *tags],
        "editable": False,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "utc",
        "graphTooltip": 1,
        "templating": {"list": variables},
        "annotations": {"list": []},
        "links": [],
        "panels": out,
    }


def variable(name: str, label: str, metric: str, label_name: str) -> dict[str, Any]:
    query = f"label_values({metric}, {label_name})"
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": name},
        "definition": query,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "refresh": 2,
        "sort": 1,
        "current": {"text": "All", "value": "$__all"},
    }


# ---- the dashboards ----------------------------------------------------------------------


def api_overview() -> dict[str, Any]:
    sel = f'{API}, component=~"$component"'
    req = f"rate(http_requests_total{{{sel}}}[$__rate_interval])"
    err = f'rate(http_requests_total{{{sel}, status=~"5.."}}[$__rate_interval])'
    bucket = f"rate(http_request_duration_seconds_bucket{{{sel}}}[$__rate_interval])"
    panels = [
        stat(
            "Request rate",
            f"sum({req})",
            "reqps",
            "Requests per second answered by the API and the worker (all endpoints, all statuses).",
        ),
        stat(
            "Error ratio (5xx)",
            f"(sum({err}) or vector(0)) / sum({req})",
            "percentunit",
            "Share of requests answered with a 5xx status (499, client gone, is not an error). "
            "Alert: ApiHighErrorRatio above 5 %.",
        ),
        stat(
            "Latency p95",
            f"histogram_quantile(0.95, sum by (le) ({bucket}))",
            "s",
            "95th percentile of the request duration over every endpoint. Alerts: "
            "ApiHighLatencyP95 above 0.5 s, ApiHighLatencyP99 above 2 s.",
        ),
        stat(
            "In progress",
            f"sum(http_requests_in_progress{{{sel}}})",
            "short",
            "Requests being served right now.",
        ),
        graph(
            "Requests by endpoint",
            "reqps",
            "Request rate per route template (method and endpoint); unknown paths are grouped "
            "as <unmatched>.",
            (f"sum by (method, endpoint) ({req})", "{{method}} {{endpoint}}"),
        ),
        graph(
            "Status mix",
            "reqps",
            "Request rate per HTTP status code. 499: the client went away before the response.",
            (f"sum by (status) ({req})", "{{status}}"),
        ),
        graph(
            "Latency p95 by endpoint",
            "s",
            "95th percentile of the request duration per route template, from the histogram "
            "buckets.",
            (
                f"histogram_quantile(0.95, sum by (le, method, endpoint) ({bucket}))",
                "{{method}} {{endpoint}}",
            ),
        ),
        graph(
            "5xx by endpoint",
            "reqps",
            "Rate of 5xx answers per route template: where the errors come from.",
            (f"sum by (method, endpoint) ({err})", "{{method}} {{endpoint}}"),
        ),
        graph(
            "In progress by method",
            "short",
            "Concurrent requests per HTTP method; a rising line with flat throughput means "
            "requests queue up.",
            (f"sum by (method) (http_requests_in_progress{{{sel}}})", "{{method}}"),
        ),
        Panel(
            "Slowest endpoints (p95 over the range)",
            "table",
            "s",
            "The ten route templates with the highest 95th percentile latency over the "
            "dashboard's time range.",
            [
                (
                    "topk(10, histogram_quantile(0.95, sum by (le, method, endpoint) "
                    f"(rate(http_request_duration_seconds_bucket{{{sel}}}[$__range]))))",
                    "",
                )
            ],
            instant=True,
        ),
    ]
    component = variable("component", "Component", f"http_requests_total{{{API}}}", "component")
    return _render(
        "assistant-api-overview",
        "API overview",
        "RED view of the personal-assistant API: rate, errors and duration by endpoint.",
        ["api"],
        panels,
        [component],
    )


def business() -> dict[str, Any]:
    sms = "rate(sms_messages_total[$__rate_interval])"
    tasks = "rate(task_executions_total[$__rate_interval])"
    panels = [
        stat(
            "Registered users",
            "max(registered_users)",
            "short",
            "Users stored in PostgreSQL, read at scrape time.",
        ),
        stat(
            "Active sessions",
            "max(active_sessions)",
            "short",
            "Sessions in Redis that have not expired.",
        ),
        stat(
            "OAuth adoption",
            "max(oauth_adoption_rate)",
            "percentunit",
            "Share of registered users with at least one OAuth integration "
            "(recording rule oauth_adoption_rate).",
        ),
        stat(
            "SMS per user (24 h)",
            "max(sms_usage_per_user)",
            "short",
            "SMS messages of the last 24 hours per registered user (sms_usage_per_user).",
        ),
        graph(
            "SMS by provider and outcome",
            "msgps",
            "Messages processed per second, per provider and outcome. Alert: SmsFailureRatioHigh.",
            (f"sum by (provider, status) ({sms})", "{{provider}} {{status}}"),
        ),
        graph(
            "SMS success rate",
            "percentunit",
            "Delivered share per provider (sms_success_rate, 5-minute windows).",
            ("sms_success_rate", "{{provider}}"),
        ),
        graph(
            "SMS spending",
            "short",
            "Provider charges per hour (billing currency) for delivered messages, per provider. "
            "Alert: SmsCostSpike.",
            ("sum by (provider) (rate(sms_cost_total[$__rate_interval])) * 3600", "{{provider}}"),
        ),
        graph(
            "Queues",
            "short",
            "Messages and tasks waiting. Alerts: SmsQueueBacklog, TaskQueueBacklog.",
            ("max(sms_queue_length)", "sms"),
            ("max by (queue) (task_queue_length)", "{{queue}}"),
        ),
        graph(
            "Tasks by type and outcome",
            "ops",
            "Background task runs per second, per type and outcome (success, failure, timeout).",
            (f"sum by (task_type, outcome) ({tasks})", "{{task_type}} {{outcome}}"),
        ),
        graph(
            "Task success rate",
            "percentunit",
            "Successful share of task runs per type (task_success_rate). Alert: "
            "TaskFailureRatioHigh.",
            ("task_success_rate", "{{task_type}}"),
        ),
        graph(
            "Task duration p95",
            "s",
            "95th percentile of task run time per type.",
            (
                "histogram_quantile(0.95, sum by (le, task_type) "
                "(rate(task_execution_duration_seconds_bucket[$__rate_interval])))",
                "{{task_type}}",
            ),
        ),
        graph(
            "OAuth integrations",
            "short",
            "Active integrations per provider, from PostgreSQL at scrape time.",
            ("max by (provider) (oauth_integrations_active)", "{{provider}}"),
        ),
        graph(
            "OAuth token refreshes",
            "ops",
            "Refreshes per second by provider and outcome. Alert: OAuthRefreshFailures.",
            (
                "sum by (provider, status) (rate(oauth_token_refresh_total[$__rate_interval]))",
                "{{provider}} {{status}}",
            ),
        ),
        graph(
            "SMS provider time p95",
            "s",
            "95th percentile of the time a provider takes to accept one SMS, per provider.",
            (
                "histogram_quantile(0.95, sum by (le, provider) "
                "(rate(sms_processing_duration_seconds_bucket[$__rate_interval])))",
                "{{provider}}",
            ),
        ),
        graph(
            "OAuth errors",
            "ops",
            "OAuth errors per second by provider and type (access_denied, invalid_grant, "
            "provider errors).",
            (
                "sum by (provider, error_type) (rate(oauth_errors_total[$__rate_interval]))",
                "{{provider}} {{error_type}}",
            ),
        ),
        graph(
            "OAuth operations p95",
            "s",
            "95th percentile of OAuth operation time (connect, refresh, revoke) per provider.",
            (
                "histogram_quantile(0.95, sum by (le, provider) "
                "(rate(oauth_operation_duration_seconds_bucket[$__rate_interval])))",
                "{{provider}}",
            ),
        ),
        graph(
            "Registrations and phone verifications",
            "ops",
            "New users, and phone verifications by outcome (sent, verified, failed, expired), "
            "per second.",
            ("sum(rate(user_registrations_total[$__rate_interval]))", "registrations"),
            (
                "sum by (status) (rate(phone_verifications_total[$__rate_interval]))",
                "verification {{status}}",
            ),
            width=24,
        ),
    ]
    return _render(
        "assistant-business",
        "Business",
        "SMS, OAuth, background tasks, users and sessions of the personal-assistant service.",
        ["business"],
        panels,
        [],
    )


def host() -> dict[str, Any]:
    panels = [
        stat(
            "CPU busy",
            "max(system_cpu_usage_percent)",
            "percent",
            "Average busy share of every core (system_cpu_usage_percent). Alert: HostCpuHigh.",
        ),
        stat(
            "Memory used",
            "max(system_memory_usage_bytes)",
            "bytes",
            "Total minus available memory (system_memory_usage_bytes). Alert: HostMemoryPressure.",
        ),
        stat(
            "Fullest file system",
            "max(system_disk_usage_percent)",
            "percent",
            "Usage of the fullest real file system. Alerts: HostDiskAlmostFull, "
            "HostDiskWillFillIn24h.",
        ),
        stat("Uptime", "max(system_uptime_seconds)", "s", "Time since the host booted."),
        graph(
            "CPU by mode",
            "percentunit",
            "Share of CPU time per mode, all cores together (iowait: waiting for the disk).",
            (
                'sum by (mode) (rate(node_cpu_seconds_total{mode!="idle"}[$__rate_interval]))'
                ' / scalar(count(node_cpu_seconds_total{mode="idle"}))',
                "{{mode}}",
            ),
        ),
        graph(
            "Load per core",
            "short",
            "1- and 5-minute load divided by the number of cores. Alert: HostLoadHigh above 2.",
            ('max(node_load1) / scalar(count(node_cpu_seconds_total{mode="idle"}))', "load1"),
            ('max(node_load5) / scalar(count(node_cpu_seconds_total{mode="idle"}))', "load5"),
        ),
        graph(
            "File systems",
            "percent",
            "Usage of each real file system (system_disk_usage_percent).",
            ("system_disk_usage_percent", "{{mountpoint}}"),
        ),
        graph(
            "Network",
            "Bps",
            "Bytes per second over every interface but loopback (system_network_io_bytes).",
            ("system_network_io_bytes", "{{direction}}"),
        ),
    ]
    return _render(
        "assistant-host",
        "Host",
        "The host under the stack, from node_exporter.",
        ["host"],
        panels,
        [],
    )


def slo() -> dict[str, Any]:
    def remaining(slo: str, bad: str, total: str) -> str:
        return (
            f'1 - ({bad}) / ({total}) / on() group_left() (1 - slo:objective:ratio{{slo="{slo}"}})'
        )

    errors = (
        f'sum by (job) (rate(http_requests_total{{{API}, status=~"5.."}}[30d]))',
        f"sum by (job) (rate(http_requests_total{{{API}}}[30d]))",
    )
    slow = (
        f"sum by (job) (rate(http_request_duration_seconds_count{{{API}}}[30d]))"
        f' - sum by (job) (rate(http_request_duration_seconds_bucket{{{API}, le="0.5"}}[30d]))',
        f"sum by (job) (rate(http_request_duration_seconds_count{{{API}}}[30d]))",
    )
    windows = ("5m", "1h", "6h", "1d")

    def burn(slo: str, series: str) -> list[tuple[str, str]]:
        budget = f'(1 - slo:objective:ratio{{slo="{slo}"}})'
        return [(f"{series}{w}{{{API}}} / on() group_left() {budget}", w) for w in windows]

    panels = [
        stat(
            "Availability objective",
            'slo:objective:ratio{slo="availability"}',
            "percentunit",
            "Share of requests to answer without a 5xx over 30 days (slo.rules.yml).",
        ),
        stat(
            "Availability budget left (30 d)",
            remaining("availability", *errors),
            "percentunit",
            "Share of the 30-day availability error budget not yet spent.",
        ),
        stat(
            "Latency objective",
            'slo:objective:ratio{slo="latency"}',
            "percentunit",
            "Share of requests to answer within 0.5 s over 30 days (slo.rules.yml).",
        ),
        stat(
            "Latency budget left (30 d)",
            remaining("latency", *slow),
            "percentunit",
            "Share of the 30-day latency error budget not yet spent.",
        ),
        graph(
            "Availability burn rate",
            "short",
            "How many times faster than sustainable the availability budget burns, per window. "
            "Alerts: ApiAvailabilityBudgetBurnFast above 14.4 (1 h and 5 min) or 6 (6 h and "
            "30 min), ApiAvailabilityBudgetBurnSlow above 3 or 1.",
            *burn("availability", "job:slo_availability_errors:ratio_rate"),
        ),
        graph(
            "Latency burn rate",
            "short",
            "How many times faster than sustainable the latency budget burns, per window. "
            "Alerts: ApiLatencyBudgetBurnFast and ApiLatencyBudgetBurnSlow.",
            *burn("latency", "job:slo_latency_slow:ratio_rate"),
        ),
    ]
    return _render(
        "assistant-slo",
        "SLO",
        "The API's service level objectives: error budgets left and burn rates.",
        ["slo"],
        panels,
        [],
    )


def postgresql() -> dict[str, Any]:
    panels = [
        stat(
            "Up",
            "min(pg_up)",
            "bool",
            "1 while postgres_exporter reaches PostgreSQL. Alert: PostgresDown.",
        ),
        stat(
            "Connections used",
            "sum(pg_stat_activity_count) / max(pg_settings_max_connections)",
            "percentunit",
            "Share of max_connections in use. Alert: PostgresTooManyConnections above 80 %.",
        ),
        stat(
            "Oldest transaction",
            "max(long_transactions_oldest_seconds)",
            "s",
            "Age of the oldest open transaction (custom query). Alert: PostgresLongTransaction "
            "above 5 minutes.",
        ),
        stat(
            "Database size",
            'max(pg_database_size_bytes{datname="assistant"})',
            "bytes",
            "Size of the service's database on disk.",
        ),
        graph(
            "Connections by state",
            "short",
            "Sessions per state (active, idle, idle in transaction, ...).",
            ("sum by (state) (pg_stat_activity_count)", "{{state}}"),
        ),
        graph(
            "Transactions",
            "ops",
            "Commits and rollbacks per second in the service's database.",
            (
                'sum(rate(pg_stat_database_xact_commit{datname="assistant"}[$__rate_interval]))',
                "commit",
            ),
            (
                'sum(rate(pg_stat_database_xact_rollback{datname="assistant"}[$__rate_interval]))',
                "rollback",
            ),
        ),
        graph(
            "Deadlocks",
            "short",
            "Deadlocks per database in each interval. Alert: PostgresDeadlocks.",
            (
                "sum by (datname) (increase(pg_stat_database_deadlocks[$__rate_interval]))",
                "{{datname}}",
            ),
        ),
        graph(
            "Table rows",
            "short",
            "Live and dead rows of the service's tables (custom query); dead rows wait for vacuum.",
            ("sum by (table) (assistant_tables_live_rows)", "{{table}} live"),
            ("sum by (table) (assistant_tables_dead_rows)", "{{table}} dead"),
        ),
        graph(
            "Service's pool",
            "percentunit",
            "Checked-out share of the service's SQLAlchemy pool, per process.",
            ("database_connection_pool_utilization", "{{component}}"),
        ),
        graph(
            "Service's database check",
            "s",
            "Time of the service's own database check (SELECT 1 through its pool).",
            ("database_response_time_seconds", "{{component}}"),
        ),
    ]
    return _render(
        "assistant-postgresql",
        "PostgreSQL",
        "PostgreSQL as postgres_exporter and the service see it.",
        ["postgresql"],
        panels,
        [],
    )


def redis() -> dict[str, Any]:
    panels = [
        stat(
            "Up",
            "min(redis_up)",
            "bool",
            "1 while redis_exporter reaches Redis. Alert: RedisDown.",
        ),
        stat(
            "Memory used",
            "max(redis_memory_used_bytes)",
            "bytes",
            "Memory Redis uses. Alert: RedisMemoryNearLimit above 90 % of maxmemory.",
        ),
        stat("Clients", "max(redis_connected_clients)", "short", "Connected clients."),
        stat("Keys", "sum(redis_db_keys)", "short", "Keys in every database."),
        graph(
            "Commands",
            "ops",
            "Commands processed per second.",
            ("sum(rate(redis_commands_processed_total[$__rate_interval]))", "commands"),
        ),
        graph(
            "Memory against the limit",
            "bytes",
            "Used memory and maxmemory (0: no limit).",
            ("max(redis_memory_used_bytes)", "used"),
            ("max(redis_memory_max_bytes)", "max"),
        ),
        graph(
            "Keyspace hit ratio",
            "percentunit",
            "Share of key lookups that found their key.",
            (
                "sum(rate(redis_keyspace_hits_total[$__rate_interval])) / "
                "(sum(rate(redis_keyspace_hits_total[$__rate_interval])) + "
                "sum(rate(redis_keyspace_misses_total[$__rate_interval])))",
                "hits",
            ),
        ),
        graph(
            "Evictions and rejections",
            "short",
            "Keys evicted and connections rejected in each interval. Alerts: RedisEvictions, "
            "RedisRejectedConnections.",
            ("sum(increase(redis_evicted_keys_total[$__rate_interval]))", "evicted"),
            ("sum(increase(redis_rejected_connections_total[$__rate_interval]))", "rejected"),
        ),
    ]
    return _render(
        "assistant-redis", "Redis", "Redis as redis_exporter sees it.", ["redis"], panels, []
    )


def stack_health() -> dict[str, Any]:
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
    return _render(
        "assistant-stack-health",
        "Stack health",
        "Prometheus, Alertmanager and the scrape targets themselves.",
        ["stack"],
        panels,
        [],
    )


DASHBOARDS: dict[str, Callable[[], dict[str, Any]]] = {
    "api/api-overview.json": api_overview,
    "business/business.json": business,
    "infrastructure/host.json": host,
    "infrastructure/postgresql.json": postgresql,
    "infrastructure/redis.json": redis,
    "slo/slo.json": slo,
    "stack/stack-health.json": stack_health,
}


def files() -> dict[str, str]:
    """Relative path under grafana/dashboards -> JSON text."""
    return {path: json.dumps(build(), indent=2) + "\n" for path, build in DASHBOARDS.items()}
