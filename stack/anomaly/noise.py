"""How noisy each signal is at a given time, from the generator's own model (not from the
rules): the relative standard deviation of its 15-minute value, counting noise (Poisson
events in 15 minutes, or the 15 samples a gauge is averaged over) and the slow 5 % wobble
together. An anomaly's size in these units says whether any detector could see it; the
documented detectable size is stated in them (report.DETECTABLE_NOISE)."""

from __future__ import annotations

import math

from .generate import (
    ERROR_RATIO,
    REQUESTS_AT_PEAK,
    SIGNUPS_AT_PEAK,
    VERIFICATIONS_AT_PEAK,
    WOBBLE,
    Month,
)
from .model import load
from .signals import PROVIDERS

WINDOW = 900  # the rules' 15 minutes
LATENCY_NOISE = 0.1  # the p95 of a histogram: wobble plus its bucket interpolation


def _count(rate: float) -> float:
    return math.sqrt(1 / max(rate * WINDOW, 1e-9) + WOBBLE**2)


def _ratio(share: float, rate: float) -> float:
    return math.sqrt((1 - share) / max(share * rate * WINDOW, 1e-9) + WOBBLE**2)


def relative_noise(key: str, t: int, month: Month) -> float:
    level = load(t, month.start, month.quiet_days)
    signal, _, label = key.partition("/")
    if signal == "request_rate":
        return _count(REQUESTS_AT_PEAK * level)
    if signal == "error_ratio":
        return _ratio(ERROR_RATIO, REQUESTS_AT_PEAK * level)
    if signal == "latency_p95":
        return LATENCY_NOISE
    if signal in ("sms_sent", "sms_cost_rate"):
        return _count(PROVIDERS[label][0] * level)
    if signal == "sms_failure_ratio":
        return _ratio(PROVIDERS[label][1], PROVIDERS[label][0] * level)
    if signal == "signups":
        return _count(SIGNUPS_AT_PEAK * level)
    if signal == "verification_attempts":
        return _count(VERIFICATIONS_AT_PEAK * level)
    waiting = 2 + 10 * level if signal == "sms_queue_length" else 4 + 16 * level
    return math.sqrt(1 / (waiting * WINDOW / 60) + WOBBLE**2)
