"""The evaluation's figures, printed: per signal and overall, the anomaly rules beside the
static thresholds, and whether the targets hold."""

from __future__ import annotations

from collections import Counter

from .anomalies import Anomaly
from .evaluate import Result
from .score import Score

KINDS = ("spike", "drop", "level_shift", "drift")
RECALL_TARGET = 0.9
FALSE_PER_WEEK_TARGET = 1.0
SPIKE_DETECT_TARGET = 15 * 60


def targets(score: Score, detectable: set[Anomaly]) -> dict[str, bool]:
    spikes = score.detect_times("spike", detectable)
    return {
        f"recall >= {RECALL_TARGET:.0%} above the documented size": score.recall(detectable)
        >= RECALL_TARGET,
        f"at most {FALSE_PER_WEEK_TARGET:g} false alert per signal per week": (
            score.worst_false_per_week() <= FALSE_PER_WEEK_TARGET
        ),
        "spikes detected within 15 minutes": all(s <= SPIKE_DETECT_TARGET for s in spikes),
    }


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.0f} min"


def lines(result: Result) -> list[str]:
    kinds = Counter(a.kind for a in result.rules.anomalies)
    out = [
        f"anomaly evaluation, seed {result.month.seed}, form {result.form.name} "
        f"(rules evaluated every {result.form.interval} s), {result.samples:,} samples, "
        f"{len(result.rules.anomalies)} anomalies in the last two weeks "
        f"({', '.join(f'{n} {k}' for k, n in kinds.items())})",
        f"{'detector':<18}{'precision':>10}{'recall':>8}{'recall>=size':>14}"
        f"{'false/wk (worst signal)':>25}{'alerts':>8}",
    ]
    for name, score in (("anomaly rules", result.rules), ("static thresholds", result.static)):
        out.append(
            f"{name:<18}{score.precision:>10.0%}{score.recall():>8.0%}"
            f"{score.recall(result.detectable):>14.0%}{score.worst_false_per_week():>25.1f}"
            f"{score.episodes:>8}"
        )
    out.append("time to detect (median; anomaly rules / static):")
    for kind in KINDS:
        out.append(
            f"  {kind:<12} {_minutes(result.rules.median_detect(kind)):>8} / "
            f"{_minutes(result.static.median_detect(kind)):>8}"
        )
    out.append(
        f"{len(result.detectable)} of {len(result.rules.anomalies)} anomalies at least the "
        "documented size (evaluate.is_detectable)"
    )
    out.append("per signal: anomalies, caught by the rules / static, "
               "false alerts per week (rules / static)")  # fmt: skip
    keys = sorted({a.key for a in result.rules.anomalies} | set(result.rules.false_by_key)
                  | set(result.static.false_by_key))  # fmt: skip
    for key in keys:
        mine = [a for a in result.rules.anomalies if a.key == key]
        caught = sum(a in result.rules.detected for a in mine)
        base = sum(a in result.static.detected for a in mine)
        out.append(
            f"  {key:<28}{len(mine):>3}{caught:>4} /{base:>3}"
            f"{result.rules.false_by_key.get(key, 0) / result.rules.weeks:>8.1f} /"
            f"{result.static.false_by_key.get(key, 0) / result.static.weeks:>5.1f}"
        )
    out.append("the anomalies of the documented size: kind, signal, size, minutes to detect "
               "(rules / static)")  # fmt: skip
    for a in sorted(result.detectable, key=lambda a: (a.kind, a.key)):
        out.append(
            f"  {a.kind:<12}{a.key:<28}{a.size:>+6.0%} {_minutes(result.rules.detected.get(a)):>8}"
            f" / {_minutes(result.static.detected.get(a)):>8}"
        )
    out.append("missed by the rules: " + (", ".join(
        f"{a.kind} {a.key} {a.size:+.0%}{'' if a in result.detectable else ' (small)'}"
        for a in result.rules.anomalies
        if a not in result.rules.detected) or "none"))  # fmt: skip
    for name, held in targets(result.rules, result.detectable).items():
        out.append(f"  {'ok  ' if held else 'FAIL'} {name}")
    out.append("timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in result.timings.items()))
    return out
