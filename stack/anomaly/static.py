"""The static-threshold baseline on the same replay: per signal instance, one fixed upper
threshold (1.2 times the 99.5th percentile of the smoothed signal over the two history
weeks) and, where a drop matters, one fixed lower one (half its 0.5th percentile), each held
for the anomaly alerts' 10 minutes: the alert a person would write after looking at two
weeks of graphs, ``signal:value:smooth15m > T for: 10m``."""

from __future__ import annotations

from .alerts import Firing, fired, key_of
from .prometheus import Series
from .signals import LOW_TOO

HOLD = 600


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def thresholds(history: Series) -> tuple[float, float | None]:
    values = [v for _, v in history[1] if v == v]  # NaN: nothing to divide
    upper = 1.2 * _percentile(values, 0.995)
    lower = 0.5 * _percentile(values, 0.005) if history[0].get("signal") in LOW_TOO else None
    return upper, lower


def firings(history: list[Series], evaluated: list[Series], step: int) -> list[Firing]:
    limits = {key_of(s[0]): thresholds(s) for s in history}
    found: list[Firing] = []
    for labels, points in evaluated:
        key = key_of(labels)
        if key not in limits:
            continue
        upper, lower = limits[key]
        for name, hit in (
            ("StaticHigh", [(t, v) for t, v in points if v > upper]),
            ("StaticLow", [(t, v) for t, v in points if lower is not None and v < lower]),
        ):
            found += [Firing(name, key, a, b) for a, b in fired((labels, hit), HOLD, step)]
    return found
