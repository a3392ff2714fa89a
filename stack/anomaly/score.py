"""Alerts against the labelled anomalies: which anomalies were caught and how fast, which
alerts no anomaly explains (false alerts), per signal.

An episode (one alert on one signal instance) is explained by an anomaly of the same signal
in the alert's direction (AnomalyHigh: a rise, AnomalyLow: a fall) when it starts between the
anomaly's start and GRACE after its end; an SMS rise also explains a rise of that provider's
SMS cost (the bill follows the messages). An anomaly is detected when an episode on its own
signal explains it; its time to detect is from its start to that episode's first firing."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field

from .alerts import Firing
from .anomalies import Anomaly

GRACE = 3600
LOW_ALERTS = ("AnomalyLow", "StaticLow")


@dataclass
class Score:
    anomalies: list[Anomaly]
    detected: dict[Anomaly, int]  # anomaly -> seconds to detect
    false: list[Firing]
    episodes: int
    weeks: float
    false_by_key: dict[str, int] = field(default_factory=dict)

    @property
    def precision(self) -> float:
        return (self.episodes - len(self.false)) / self.episodes if self.episodes else 1.0

    def recall(self, among: set[Anomaly] | None = None) -> float:
        counted = [a for a in self.anomalies if among is None or a in among]
        return sum(a in self.detected for a in counted) / len(counted) if counted else 1.0

    def worst_false_per_week(self) -> float:
        return max(self.false_by_key.values(), default=0) / self.weeks

    def detect_times(self, kind: str, among: set[Anomaly] | None = None) -> list[int]:
        return [s for a, s in self.detected.items()
                if a.kind == kind and (among is None or a in among)]  # fmt: skip

    def median_detect(self, kind: str) -> float | None:
        times = self.detect_times(kind)
        return statistics.median(times) if times else None


def _coupled(anomaly: Anomaly) -> set[str]:
    keys = {anomaly.key}
    if anomaly.key.startswith("sms_sent/") and anomaly.up:
        keys.add(anomaly.key.replace("sms_sent/", "sms_cost_rate/"))
    return keys


def explains(anomaly: Anomaly, episode: Firing) -> bool:
    if (episode.alert in LOW_ALERTS) == anomaly.up:
        return False
    in_time = anomaly.start <= episode.start <= anomaly.end + GRACE
    return episode.key in _coupled(anomaly) and in_time


def score(anomalies: list[Anomaly], episodes: list[Firing], weeks: float) -> Score:
    detected: dict[Anomaly, int] = {}
    false: list[Firing] = []
    for episode in episodes:
        causes = [a for a in anomalies if explains(a, episode)]
        if not causes:
            false.append(episode)
        for anomaly in causes:
            if episode.key == anomaly.key:
                late = episode.start - anomaly.start
                detected[anomaly] = min(late, detected.get(anomaly, late))
    by_key: dict[str, int] = defaultdict(int)
    for episode in false:
        by_key[episode.key] += 1
    return Score(anomalies, detected, false, len(episodes), weeks, dict(by_key))
