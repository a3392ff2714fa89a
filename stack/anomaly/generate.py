"""Four weeks of the app's series, one sample a minute, with labelled anomalies: the counters
and gauges the anomaly rules read (http_requests_total, http_request_duration_seconds,
sms_messages_total, sms_cost_total, user_registrations_total, phone_verifications_total,
sms_queue_length, task_queue_length), as the app would expose them."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field

from app_metrics import HTTP_BUCKETS

from .anomalies import Anomaly, schedule
from .model import DAY, Wobble, load, lognormal_cdf, poisson
from .signals import JOB, PROVIDERS, QUEUE, all_signals

STEP = 60
REQUESTS_AT_PEAK = 20.0  # per second
ERROR_RATIO = 0.01
SIGNUPS_AT_PEAK = 0.05
VERIFICATIONS_AT_PEAK = 0.15
LATENCY_SIGMA = 0.6
WOBBLE = 0.05  # the slow noise of every signal (relative)


@dataclass
class Month:
    start: int
    days: int
    seed: int
    anomalies: list[Anomaly]
    quiet_days: dict[int, float]  # day index -> traffic factor (a holiday)
    series: dict[str, list[float]] = field(default_factory=dict)  # OpenMetrics name{labels}

    @property
    def end(self) -> int:
        return self.start + self.days * DAY

    def points(self) -> dict[str, list[tuple[int, float]]]:
        return {
            name: [(self.start + i * STEP, v) for i, v in enumerate(values)]
            for name, values in self.series.items()
        }

    @property
    def evaluated_from(self) -> int:
        """The evaluation's two last weeks begin here; earlier anomalies are history."""
        return self.end - 14 * DAY


def plan(seed: int, start: int, days: int = 28, counts: dict[str, int] | None = None) -> Month:
    """The anomalies and quiet days of the month: ``counts`` per kind in the two evaluated
    weeks, a few in the history weeks (the baseline must shrug them off), a quiet day in
    each half."""
    rng = random.Random(seed)
    signals = all_signals()
    counts = counts or {"spike": 8, "drop": 6, "level_shift": 7, "drift": 7}
    end = start + days * DAY
    history = schedule(
        rng, signals, {"spike": 2, "drop": 2, "level_shift": 2}, start, end - 14 * DAY
    )
    scored = schedule(rng, signals, counts, end - 14 * DAY, end)
    quiet = {rng.randrange(7, 12): 0.6, rng.randrange(days - 12, days - 2): 0.65}
    return Month(start, days, seed, history + scored, quiet)


def generate(month: Month) -> Month:
    """Fill ``month.series``: cumulative counters and gauges, one value a minute."""
    rng = random.Random(month.seed + 1)
    wobble = defaultdict(lambda: Wobble(rng, WOBBLE))
    by_key: dict[str, list[Anomaly]] = defaultdict(list)
    for anomaly in month.anomalies:
        by_key[anomaly.key].append(anomaly)

    def factor(key: str, t: int) -> float:
        value = 1.0
        for anomaly in by_key.get(key, ()):
            value *= anomaly.factor(t)
        return value

    out: dict[str, list[float]] = defaultdict(list)
    totals: dict[str, float] = defaultdict(float)

    def count(name: str, amount: float) -> None:
        totals[name] += amount
        out[name].append(totals[name])

    job = f'job="{JOB}"'
    for t in range(month.start, month.end, STEP):
        level = load(t, month.start, month.quiet_days)
        requests = poisson(rng, REQUESTS_AT_PEAK * level * wobble["rq"].next()
                           * factor("request_rate", t) * STEP)  # fmt: skip
        ratio = min(1.0, ERROR_RATIO * wobble["err"].next() * factor("error_ratio", t))
        errors = min(requests, poisson(rng, requests * ratio))
        count(f'http_requests_total{{{job},status="500"}}', errors)
        count(f'http_requests_total{{{job},status="200"}}', requests - errors)
        median = (0.05 + 0.03 * level) * wobble["lat"].next() * factor("latency_p95", t)
        for le in HTTP_BUCKETS:
            below = round(requests * lognormal_cdf(le, median, LATENCY_SIGMA))
            count(f'http_request_duration_seconds_bucket{{{job},le="{le}"}}', below)
        count(f'http_request_duration_seconds_bucket{{{job},le="+Inf"}}', requests)
        count(f"http_request_duration_seconds_count{{{job}}}", requests)
        count(f"http_request_duration_seconds_sum{{{job}}}", requests * median * 1.2)
        for provider, (peak, failing, price) in PROVIDERS.items():
            sent = poisson(rng, peak * level * wobble[provider].next()
                           * factor(f"sms_sent/{provider}", t) * STEP)  # fmt: skip
            share = min(1.0, failing * wobble[f"{provider}-f"].next()
                        * factor(f"sms_failure_ratio/{provider}", t))  # fmt: skip
            failed = min(sent, poisson(rng, sent * share))
            labels = f'{job},provider="{provider}"'
            count(f'sms_messages_total{{{labels},status="success"}}', sent - failed)
            count(f'sms_messages_total{{{labels},status="failure"}}', failed)
            bill = (sent - failed) * price * factor(f"sms_cost_rate/{provider}", t)
            count(f"sms_cost_total{{{labels}}}", bill)
        signups = SIGNUPS_AT_PEAK * level * wobble["su"].next() * factor("signups", t)
        count(f"user_registrations_total{{{job}}}", poisson(rng, signups * STEP))
        codes = VERIFICATIONS_AT_PEAK * level * wobble["vf"].next()
        codes *= factor("verification_attempts", t)
        count(f'phone_verifications_total{{{job},status="sent"}}', poisson(rng, codes * STEP))
        sms_waiting = (2 + 10 * level) * factor("sms_queue_length", t)
        out[f"sms_queue_length{{{job}}}"].append(poisson(rng, sms_waiting))
        tasks_waiting = (4 + 16 * level) * factor(f"task_queue_length/{QUEUE}", t)
        out[f'task_queue_length{{{job},queue="{QUEUE}"}}'].append(poisson(rng, tasks_waiting))
    month.series = dict(out)
    return month
