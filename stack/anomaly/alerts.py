"""The alerts over the replayed weeks, as Prometheus would fire them: each alert's expression
asked as a range query at the rule evaluation interval, then its ``for:`` applied here (a
series fires once it has been returned at every evaluation for ``for:``; a missed
evaluation resets it, as Prometheus' pending state is reset)."""

from __future__ import annotations

from dataclasses import dataclass

from ..promql import seconds
from .prometheus import Prometheus, Series


@dataclass(frozen=True)
class Firing:
    alert: str
    key: str  # the signal instance: signal/provider or signal/queue
    start: int  # first evaluation at which it fires
    end: int  # last evaluation at which it fires


def key_of(labels: dict[str, str]) -> str:
    return "/".join(
        v for v in (labels.get("signal"), labels.get("provider"), labels.get("queue")) if v
    )


def fired(series: Series, hold: int, step: int) -> list[tuple[int, int]]:
    """The spans [first, last evaluation] in which the series fires, ``hold`` its ``for:``."""
    spans: list[tuple[int, int]] = []
    since = previous = None
    for t, _ in series[1]:
        if previous is None or t - previous > step:
            since = t
        previous = t
        if t - since >= hold:
            if spans and spans[-1][1] == t - step:
                spans[-1] = (spans[-1][0], t)
            else:
                spans.append((t, t))
    return spans


def firings(prometheus: Prometheus, rule: dict, start: int, end: int, step: int) -> list[Firing]:
    hold = int(seconds(rule["for"])) if "for" in rule else 0
    found = []
    for series in prometheus.query_range(rule["expr"], start, end, step):
        key = key_of(series[0])
        found += [Firing(rule["alert"], key, a, b) for a, b in fired(series, hold, step)]
    return found


def episodes(found: list[Firing], merge: int) -> list[Firing]:
    """Firings of one alert on one signal less than ``merge`` seconds apart as one: a
    notification resolved and sent again within it is the same incident to whoever reads it."""
    merged: list[Firing] = []
    for f in sorted(found, key=lambda f: (f.alert, f.key, f.start)):
        last = merged[-1] if merged else None
        if last and (last.alert, last.key) == (f.alert, f.key) and f.start - last.end <= merge:
            merged[-1] = Firing(f.alert, f.key, last.start, max(last.end, f.end))
        else:
            merged.append(f)
    return merged
