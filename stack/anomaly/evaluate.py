"""One evaluation run: generate, backfill, record, ask the alerts, score (both detectors)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import ROOT
from ..processes import free_port
from ..rules import LOADED, alerts, read
from . import alerts as alert_eval
from . import static
from .anomalies import Anomaly
from .backfill import backfill
from .generate import Month, generate, plan
from .model import DAY
from .noise import relative_noise
from .prometheus import Prometheus
from .recording import record
from .score import Score, score

RULES = LOADED / "anomaly.rules.yml"
# The documented detectable size: a change of at least DETECTABLE_NOISE[kind] times the
# signal's own noise at that time (noise.relative_noise, the generator's model, not the
# rules' spread), and a fall to under DROP_TO of the usual level (AnomalyLow's half, with a
# margin). A spike must be larger to be caught within 15 minutes: the 15-minute value takes
# that long to show all of it.
DETECTABLE_NOISE = {"spike": 12.0, "drop": 8.0, "level_shift": 8.0, "drift": 8.0}
DROP_TO = 0.4
MERGE = 3600  # an alert resolved and firing again within the hour is one episode


@dataclass(frozen=True)
class Form:
    """What a run does: ``interval`` the rule evaluation interval in the replay (seconds)."""

    name: str
    interval: int
    counts: dict[str, int] = field(
        default_factory=lambda: {"spike": 8, "drop": 6, "level_shift": 7, "drift": 7}
    )


FULL = Form("full", 60)
CI = Form("ci", 300)


@dataclass
class Result:
    month: Month
    rules: Score
    static: Score
    form: Form
    timings: dict[str, float]
    samples: int
    detectable: set[Anomaly]


def is_detectable(anomaly: Anomaly, month: Month) -> bool:
    noise = relative_noise(anomaly.key, anomaly.start, month)
    big = abs(anomaly.size) >= DETECTABLE_NOISE[anomaly.kind] * noise
    return big and (anomaly.up or 1 + anomaly.size <= DROP_TO)


def month_start(now: float) -> int:
    """Four weeks ending at the last UTC midnight at least a day ago, so every sample is in
    the past and within Prometheus' retention."""
    return (int(now) // DAY - 1) * DAY - 28 * DAY


def evaluate(
    seed: int,
    form: Form = FULL,
    root: Path = ROOT,
    rules_path: Path | None = None,
    say: Callable[[str], object] = print,
) -> Result:
    """Run the evaluation of ``seed`` in ``form``; ``rules_path``: another rule file than the
    loaded anomaly rules (a changed threshold, tried before it is committed)."""
    timings: dict[str, float] = {}
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        timings[name] = time.monotonic() - clock
        clock = time.monotonic()
        say(f"  {name}: {timings[name]:.1f} s")

    document = read(rules_path or root / RULES)
    recording = [r for g in document["groups"] for r in g["rules"] if "record" in r]
    month = generate(plan(seed, month_start(time.time()), counts=form.counts))
    lap("generate")
    with tempfile.TemporaryDirectory(prefix="anomaly-eval-") as tmp:
        work, tsdb = Path(tmp), Path(tmp) / "tsdb"
        samples = backfill(month.points(), work, tsdb)
        lap(f"backfill ({samples:,} samples)")
        evaluated = (month.evaluated_from, month.end - form.interval)
        with Prometheus(tsdb, free_port(), work) as prometheus:
            spans = [(month.start, month.end), evaluated]
            recorded = record(prometheus, recording, spans, form.interval, work)
            lap(f"recording rules ({recorded:,} samples)")
            episodes = []
            for rule in alerts(document):
                episodes += alert_eval.firings(prometheus, rule, *evaluated, form.interval)
            history = prometheus.query_range(
                "signal:value:smooth15m", month.start, month.evaluated_from, form.interval
            )
            values = prometheus.query_range("signal:value:smooth15m", *evaluated, form.interval)
            lap("alerts")
    scored = [a for a in month.anomalies if a.start >= month.evaluated_from]
    weeks = (evaluated[1] - evaluated[0]) / (7 * DAY)
    rules_score = score(scored, alert_eval.episodes(episodes, MERGE), weeks)
    baseline = alert_eval.episodes(static.firings(history, values, form.interval), MERGE)
    detectable = {a for a in scored if is_detectable(a, month)}
    static_score = score(scored, baseline, weeks)
    return Result(month, rules_score, static_score, form, timings, samples, detectable)
