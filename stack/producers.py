"""What produces each metric of the catalog ("produced by"), read from the producer itself,
never guessed from the name's prefix:

- the app's metrics: from app_metrics itself (a throwaway app, every feature on, scraped once);
- recorded names: from the rule files (prometheus/rules/);
- postgres_exporter's custom queries: from their files (exporters/postgres/*.yml: each
  top-level key with its GAUGE and COUNTER columns makes ``<key>_<column>``, its LABEL columns
  the labels), exposed by the scrape job whose target is the Compose service that mounts the file;
- every other exporter's metric and Prometheus' and Alertmanager's own: EXPOSED, a table of
  metric names by the scrape job whose target exposes them. Their names are fixed in the
  exporters' code, which this repository cannot read, so they are listed once here; `make lint`
  fails on a job prometheus/prometheus.yml does not scrape, on a listed name that no rule,
  dashboard or runbook reads, and on a name read or named by a runbook without a producer;
- PER_TARGET: the series Prometheus itself writes for every scrape target.

A job's target is named as prometheus/prometheus.yml (or, for the HA topology's own jobs,
prometheus/ha.yml) names it: a Compose service, or Prometheus itself for ``localhost``.
"""

from __future__ import annotations

import asyncio
from functools import cache
from pathlib import Path
from typing import NamedTuple

from . import ROOT, rules
from .project import job_hosts
from .yamlfile import load_yaml


class Produced(NamedTuple):
    kind: str  # counter, gauge, histogram, recording rule, or "-" when only the exporter knows
    labels: list[str]
    source: str


EXPOSED = {
    "postgres": (
        "pg_up", "pg_settings_max_connections", "pg_stat_activity_count",
        "pg_stat_activity_max_tx_duration", "pg_stat_database_deadlocks",
        "pg_stat_database_xact_commit", "pg_stat_database_xact_rollback",
        "pg_database_size_bytes", "pg_exporter_last_scrape_error",
        "pg_exporter_user_queries_load_error",
    ),
    "redis": (
        "redis_up", "redis_memory_used_bytes", "redis_memory_max_bytes",
        "redis_connected_clients", "redis_rejected_connections_total",
        "redis_evicted_keys_total", "redis_commands_processed_total", "redis_db_keys",
        "redis_keyspace_hits_total", "redis_keyspace_misses_total", "redis_errors_total",
        "redis_exporter_last_scrape_error", "redis_rdb_last_bgsave_status",
        "redis_aof_last_write_status",
    ),
    "node": (
        "node_boot_time_seconds", "node_cpu_seconds_total", "node_load1", "node_load5",
        "node_memory_MemAvailable_bytes", "node_memory_MemTotal_bytes",
        "node_filesystem_avail_bytes", "node_filesystem_size_bytes",
        "node_network_receive_bytes_total", "node_network_transmit_bytes_total",
        "node_filesystem_files", "node_filesystem_files_free", "node_filesystem_readonly",
        "node_timex_sync_status", "node_timex_offset_seconds", "node_vmstat_oom_kill",
        "node_memory_Cached_bytes", "node_memory_Buffers_bytes", "node_memory_SwapTotal_bytes",
        "node_memory_SwapFree_bytes", "node_disk_read_bytes_total",
        "node_disk_written_bytes_total", "node_disk_io_time_seconds_total",
        "node_timex_maxerror_seconds",
    ),
    "prometheus": (
        "prometheus_config_last_reload_successful", "prometheus_rule_evaluation_failures_total",
        "prometheus_rule_group_last_duration_seconds", "prometheus_notifications_errors_total",
        "prometheus_notifications_sent_total", "prometheus_tsdb_head_series",
        "prometheus_tsdb_head_samples_appended_total", "prometheus_tsdb_compactions_failed_total",
        "prometheus_tsdb_head_truncations_failed_total", "prometheus_tsdb_reloads_failures_total",
        "prometheus_rule_group_iterations_missed_total", "prometheus_tsdb_wal_corruptions_total",
        "prometheus_notifications_alertmanagers_discovered", "prometheus_tsdb_storage_blocks_bytes",
        "prometheus_rule_group_interval_seconds", "prometheus_tsdb_wal_truncations_failed_total",
        # every Go exporter, Alertmanager and the service expose these too; listed once
        "process_open_fds", "process_max_fds", "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ),
    "blackbox": ("probe_success", "probe_duration_seconds", "probe_http_status_code",
                 "probe_failed_due_to_regex"),
    "alertmanager": (
        "alertmanager_alerts", "alertmanager_config_last_reload_successful",
        "alertmanager_notifications_total", "alertmanager_notifications_failed_total",
    ),
    # the HA topology's; a rule's failure: a gauge per rule in Debian's 1.79, counters from 1.96
    "vmalert": (
        "vmalert_alerting_rules_error", "vmalert_recording_rules_error",
        "vmalert_alerting_rules_errors_total", "vmalert_recording_rules_errors_total",
        "vmalert_remotewrite_errors_total", "vmalert_alerts_send_errors_total",
    ),
}  # fmt: skip
PER_TARGET = ("up", "scrape_duration_seconds", "scrape_samples_scraped",
              "scrape_samples_post_metric_relabeling", "scrape_series_added")  # fmt: skip


def produced(root: Path = ROOT) -> dict[str, Produced]:
    """Every metric whose producer is known: the app's, the recorded names, the custom
    queries', EXPOSED and PER_TARGET."""
    targets = scrape_targets(root)
    found = {name: Produced("-", [], "Prometheus, for every scrape target") for name in PER_TARGET}
    for job, names in EXPOSED.items():
        found |= {name: Produced("-", [], _exposed_by(job, targets)) for name in names}
    return found | custom_queries(root, targets) | recorded(root) | app_metrics()


def scrape_targets(root: Path = ROOT) -> dict[str, list[str]]:
    """``{job: the hosts of its targets, or the names it discovers}`` from
    prometheus/prometheus.yml, then the jobs only the HA topology has (prometheus/ha.yml)."""
    found: dict[str, list[str]] = {}
    for name in ("ha.yml", "prometheus.yml"):  # prometheus.yml's hosts where both have the job
        config = load_yaml((root / "prometheus" / name).read_text())
        found |= {job["job_name"]: sorted(job_hosts(job)) for job in config["scrape_configs"]}
    return found


def _exposed_by(job: str, targets: dict[str, list[str]]) -> str:
    hosts = ["Prometheus" if h == "localhost" else h for h in targets.get(job, ["?"])]
    return f"{', '.join(hosts)} (job `{job}`)"


def custom_queries(root: Path, targets: dict[str, list[str]]) -> dict[str, Produced]:
    found = {}
    for path in sorted((root / "exporters" / "postgres").glob("*.yml")):
        service = _mounting_service(root, path)
        job = next((j for j, hosts in targets.items() if service in hosts), "?")
        source = f"{_exposed_by(job, targets)}: custom query in {path.relative_to(root)}"
        for key, query in load_yaml(path.read_text()).items():
            columns = [(n, c["usage"]) for m in query["metrics"] for n, c in m.items()]
            labels = sorted(n for n, usage in columns if usage == "LABEL")
            for column, usage in columns:
                if usage in ("GAUGE", "COUNTER"):
                    found[f"{key}_{column}"] = Produced(usage.lower(), labels, source)
    return found


def _mounting_service(root: Path, path: Path) -> str:
    """The Compose service (compose/compose.yaml) that mounts ``path``."""
    compose = root / "compose"
    services = load_yaml((compose / "compose.yaml").read_text())["services"]
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if (compose / source).resolve() == path.resolve():
                return name
    return "?"


def recorded(root: Path = ROOT) -> dict[str, Produced]:
    found: dict[str, Produced] = {}
    for path in rules.rule_files(root):
        for group in rules.read(path)["groups"]:
            for rule in group["rules"]:
                if "record" in rule and rule["record"] not in found:
                    labels = sorted(rule.get("labels", {}))
                    source = f"recording rule ({path.name})"
                    found[rule["record"]] = Produced("recording rule", labels, source)
    return found


def app_metrics() -> dict[str, Produced]:
    """The app's metric families as its /metrics shows them (label names from samples and
    definitions)."""
    from prometheus_client.parser import text_string_to_metric_families

    text, declared = _scraped_app()
    found = {}
    for family in text_string_to_metric_families(text):
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = {k for s in family.samples for k in s.labels if k != "le"}
        labels |= set(declared.get(family.name, ())) | set(declared.get(name, ()))
        found[name] = Produced(family.type, sorted(labels), _module(name))
    return found


def histogram_buckets() -> dict[str, tuple[float, ...]]:
    """Each app histogram's bucket boundaries (its ``le`` values but +Inf), as exposed."""
    from prometheus_client.parser import text_string_to_metric_families

    found = {}
    for family in text_string_to_metric_families(_scraped_app()[0]):
        bounds = {float(s.labels["le"]) for s in family.samples if "le" in s.labels}
        if family.type == "histogram":
            found[family.name] = tuple(sorted(b for b in bounds if b != float("inf")))
    return found


@cache
def _scraped_app() -> tuple[str, dict[str, list[str]]]:
    """Instrument a throwaway app with every feature on, drive one request of each kind, and
    scrape its /metrics: the text, and each collector's declared label names."""
    import httpx
    from fastapi import FastAPI
    from prometheus_client import CollectorRegistry

    import app_metrics

    app = FastAPI()
    app.get("/x")(lambda: {})
    registry = CollectorRegistry()
    m = app_metrics.instrument(app, registry=registry, sms_providers=["p"],
                               oauth_providers=["g"], task_types=["t"], task_queues=["q"],
                               source_ttl=0)  # fmt: skip
    m.sms.queue_length_from(lambda: 0)
    m.tasks.queue_lengths_from(lambda: {"q": 0})
    m.oauth.active_integrations_from(lambda: {"g": 0})
    m.oauth.connected_users_from(lambda: 0)
    m.users.active_sessions_from(lambda: 0)
    m.users.registered_users_from(lambda: 0)
    m.database.pool_from(lambda: app_metrics.PoolStats(size=5, checked_out=1))
    m.health.add("database", lambda: None)

    async def scrape() -> str:
        async with m.oauth.time_operation("g", "refresh"):
            pass
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://catalog") as client:
            await client.get("/x")
            await client.get("/metrics")  # the health checks and sources run once
            return (await client.get("/metrics")).text

    text = asyncio.run(scrape())
    declared = {
        name: list(getattr(collector, "_labelnames", ()))
        for name, collector in registry._names_to_collectors.items()
    }
    return text, declared


def _module(name: str) -> str:
    if name.startswith("http_"):
        return "app_metrics (HTTP middleware)"
    if name.startswith(("health_check_", "database_health", "database_response")):
        return "app_metrics (health checks)"
    if name.startswith("app_metrics_"):
        return "app_metrics (self-monitoring)"
    if name.startswith("event_loop_"):
        return "app_metrics (event-loop monitor)"
    return "app_metrics (domain metrics)"
