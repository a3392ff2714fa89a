"""What Prometheus scrapes from the running stack."""

from __future__ import annotations

import pytest

from .conftest import get, query, until
from .runtimes import Stack

pytestmark = pytest.mark.integration

# The specification's metric list, in its order (section "Metrics to expose"); 11 of them
# are recording rules (prometheus/rules/recording.rules.yml).
SPEC_METRICS = [
    "http_requests_total", "http_request_duration_seconds", "active_sessions",
    "api_response_time_seconds", "api_error_rate",
    "sms_messages_total", "sms_processing_duration_seconds", "sms_queue_length",
    "sms_success_rate", "sms_cost_total",
    "oauth_integrations_active", "oauth_token_refresh_total", "oauth_errors_total",
    "oauth_operation_duration_seconds",
    "database_connections_active", "database_connection_pool_utilization",
    "database_response_time_seconds", "database_health_status",
    "system_cpu_usage_percent", "system_memory_usage_bytes", "system_disk_usage_percent",
    "system_network_io_bytes", "system_uptime_seconds",
    "task_execution_duration_seconds", "task_success_rate", "task_queue_length",
    "user_registrations_total", "phone_verifications_total", "oauth_adoption_rate",
    "sms_usage_per_user",
]  # fmt: skip
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
