"""Business: SMS, OAuth, background tasks, users and sessions of the service."""

from __future__ import annotations

from typing import Any

from .shared import dashboard, graph, stat

PATH = "business/business.json"
# Grafana's unit for sms_cost_total: the SMS providers' billing currency (both simulated
# providers price in US dollars, assistant/config.py); change it with the contracts.
BILLING_CURRENCY = "currencyUSD"


def build() -> dict[str, Any]:
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
            "SMS spending per hour",
            BILLING_CURRENCY,
            "Provider charges for delivered messages at the pace of the moment, per hour, per "
            "provider. Alerts: SmsCostSpike, SmsCostBudgetExceeded.",
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
    return dashboard(
        "assistant-business",
        "Business",
        "SMS, OAuth, background tasks, users and sessions of the personal-assistant service.",
        "business",
        panels,
    )
