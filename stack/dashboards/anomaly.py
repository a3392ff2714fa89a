"""Anomalies: each signal of prometheus/rules/anomaly.rules.yml against its seasonal
expectation (the same time of the three weeks before) and the band of 5 spreads around it,
where AnomalyHigh and AnomalyLow fire; the scores of every signal together."""

from __future__ import annotations

from typing import Any

from .business import BILLING_CURRENCY
from .shared import Query, dashboard, graph

PATH = "anomaly/anomalies.json"
THRESHOLD = 5.0  # the alerts' score (anomaly.rules.yml)
# (signal, title, unit, scale: what the recorded value is multiplied by for the unit, what it is)
SIGNALS = (
    ("request_rate", "Request rate", "reqps", "", "requests per second, per job"),
    ("error_ratio", "Error ratio", "percentunit", "", "share of 5xx answers, per job"),
    ("latency_p95", "Latency p95", "s", "", "95th percentile of request time, per job"),
    ("sms_sent", "SMS sent", "msgps", "", "SMS processed per second, per provider"),
    ("sms_failure_ratio", "SMS failure ratio", "percentunit", "", "share of SMS failed"),
    ("sms_cost_rate", "SMS spending per hour", BILLING_CURRENCY, " * 3600", "SMS spending"),
    ("signups", "Sign-ups per hour", "short", " * 3600", "user registrations per hour"),
    ("verification_attempts", "Verification codes per hour", "short", " * 3600",
     "phone verification codes sent per hour"),
    ("sms_queue_length", "SMS queue length", "short", "", "SMS waiting"),
    ("task_queue_length", "Task queue length", "short", "", "tasks waiting per queue"),
)  # fmt: skip
# the signals whose fall AnomalyLow watches
FALLS = ("request_rate", "sms_sent", "signups", "verification_attempts")
LEGEND = "{{job}}{{provider}}{{queue}}"


def lines(signal: str, scale: str) -> list[Query]:
    """Value, expectation and the band's edges, each over 15 minutes as the rules see them."""
    return [
        (f'signal:value:{name}{{signal="{signal}"}}{scale}', f"{LEGEND} {legend}")
        for name, legend in (
            ("smooth15m", "value"),
            ("expected", "expected"),
            ("upper", "upper band"),
            ("lower", "lower band"),
        )
    ]


def build() -> dict[str, Any]:
    panels = [
        graph(
            title,
            unit,
            f"The {what} (signal:value:smooth15m, 15 minutes), its expectation (the median of "
            "the same hour one, two and three weeks ago) and the band of 5 spreads around it. "
            "Alerts: AnomalyHigh"
            + (", AnomalyLow" if signal in FALLS else "")
            + " (outside the band for 5 minutes).",
            *lines(signal, scale),
        )
        for signal, title, unit, scale, what in SIGNALS
    ]
    panels.append(
        graph(
            "Scores",
            "short",
            "How many spreads each signal is from its expectation (signal:value:score); "
            "AnomalyHigh fires above 5 and AnomalyLow below -5 (and under half), after 5 minutes.",
            ("signal:value:score", "{{signal}} " + LEGEND),
            width=24,
            lines=(-THRESHOLD, THRESHOLD),
        )
    )
    return dashboard(
        "assistant-anomalies",
        "Anomalies",
        "The service's signals against their seasonal baselines (prometheus/rules/"
        "anomaly.rules.yml, docs/anomaly.md).",
        "anomaly",
        panels,
    )
