"""SLO: the API's 30-day error budgets left and their burn rates per window
(prometheus/rules/slo.rules.yml)."""

from __future__ import annotations

from typing import Any

from .shared import API, Query, dashboard, graph, stat

PATH = "slo/slo.json"
# The burn rates the SLO alerts page or open a ticket at (the SRE workbook's table, as in
# prometheus/rules/slo.rules.yml), each read over its long window: 1 h against 14.4, 6 h
# against 6, 1 d against 3, 3 d against 1; 5 min, the shortest window, shows the burn now.
# The rates are drawn as lines on the burn-rate panels.
WINDOWS = ("5m", "1h", "6h", "1d", "3d")
BURN_RATES = (14.4, 6.0, 3.0, 1.0)


def budget(slo: str) -> str:
    """The share of requests an objective allows to fail."""
    return f'(1 - slo:objective:ratio{{slo="{slo}"}})'


def remaining(slo: str, bad: str, total: str) -> str:
    return f"1 - ({bad}) / ({total}) / on() group_left() {budget(slo)}"


def burn(slo: str, series: str) -> list[Query]:
    """One line per window: the recorded bad ratio over the budget."""
    return [(f"{series}{w}{{{API}}} / on() group_left() {budget(slo)}", w) for w in WINDOWS]


def build() -> dict[str, Any]:
    errors = (
        f'sum by (job) (rate(http_requests_total{{{API}, status=~"5.."}}[30d]))',
        f"sum by (job) (rate(http_requests_total{{{API}}}[30d]))",
    )
    slow = (
        f"sum by (job) (rate(http_request_duration_seconds_count{{{API}}}[30d]))"
        f' - sum by (job) (rate(http_request_duration_seconds_bucket{{{API}, le="0.5"}}[30d]))',
        f"sum by (job) (rate(http_request_duration_seconds_count{{{API}}}[30d]))",
    )
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
            "How many times faster than sustainable the availability budget burns, per window; "
            "the dashed lines are the alerts' burn rates. Alerts: ApiAvailabilityBudgetBurnFast "
            "above 14.4 (1 h and 5 min) or 6 (6 h and 30 min), ApiAvailabilityBudgetBurnSlow "
            "above 3 (1 d and 2 h) or 1 (3 d and 6 h).",
            *burn("availability", "job:slo_availability_errors:ratio_rate"),
            lines=BURN_RATES,
        ),
        graph(
            "Latency burn rate",
            "short",
            "How many times faster than sustainable the latency budget burns, per window; the "
            "dashed lines are the alerts' burn rates. Alerts: ApiLatencyBudgetBurnFast above "
            "14.4 (1 h and 5 min) or 6 (6 h and 30 min), ApiLatencyBudgetBurnSlow above 3 "
            "(1 d and 2 h) or 1 (3 d and 6 h).",
            *burn("latency", "job:slo_latency_slow:ratio_rate"),
            lines=BURN_RATES,
        ),
    ]
    return dashboard(
        "assistant-slo",
        "SLO",
        "The API's service level objectives: error budgets left and burn rates.",
        "slo",
        panels,
    )
