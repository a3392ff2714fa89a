"""The signals the anomaly rules watch, as the generator models them: each one's label set in
the rules (``signal`` plus job, provider or queue), its level at the busiest hour of a
weekday, and which directions of change matter (the alerts' AnomalyHigh and AnomalyLow)."""

from __future__ import annotations

from dataclasses import dataclass

JOB = "personal_assistant_api"
PROVIDERS = {"twilio": (0.5, 0.02, 0.0079), "vonage": (0.25, 0.03, 0.0068)}  # SMS/s, failed, price
QUEUE = "default"


@dataclass(frozen=True)
class Signal:
    name: str  # the rules' `signal` label
    extra: tuple[tuple[str, str], ...] = ()  # provider or queue
    kind: str = "rate"  # rate, ratio, seconds, length: what a change's size multiplies

    @property
    def key(self) -> str:
        """``sms_sent/twilio``: the signal instance anomalies and alerts are matched on."""
        return "/".join([self.name, *(v for _, v in self.extra)])

    @property
    def both_ways(self) -> bool:
        """Does a drop matter (AnomalyLow), or only a rise?"""
        return self.name in LOW_TOO


LOW_TOO = ("request_rate", "sms_sent", "signups", "verification_attempts")


def all_signals() -> list[Signal]:
    found = [
        Signal("request_rate"),
        Signal("error_ratio", kind="ratio"),
        Signal("latency_p95", kind="seconds"),
        Signal("signups"),
        Signal("verification_attempts"),
        Signal("sms_queue_length", kind="length"),
        Signal("task_queue_length", (("queue", QUEUE),), kind="length"),
    ]
    for provider in PROVIDERS:
        extra = (("provider", provider),)
        found += [
            Signal("sms_sent", extra),
            Signal("sms_failure_ratio", extra, kind="ratio"),
            Signal("sms_cost_rate", extra),
        ]
    return found


def by_key() -> dict[str, Signal]:
    return {s.key: s for s in all_signals()}
