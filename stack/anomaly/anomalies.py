"""The labelled anomalies the generator injects: what each does to its signal over time, and
a seeded schedule of them (none overlapping on one signal)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .signals import Signal

HOUR = 3600
KINDS = ("spike", "drop", "level_shift", "drift")


@dataclass(frozen=True)
class Anomaly:
    key: str  # the signal instance (signals.Signal.key)
    kind: str  # spike, drop, level_shift, drift
    start: int  # Unix seconds
    end: int
    size: float  # the change at full size, relative: +1.0 doubles the signal, -0.7 takes 70 %

    @property
    def up(self) -> bool:
        return self.size > 0

    def factor(self, t: int) -> float:
        """What the anomaly multiplies its signal by at ``t`` (1 outside it). A drift ramps
        up over its first two thirds and holds the last."""
        if not self.start <= t < self.end:
            return 1.0
        if self.kind != "drift":
            return 1.0 + self.size
        ramp = (self.end - self.start) * 2 / 3
        return 1.0 + self.size * min(1.0, (t - self.start) / ramp)


# (kind, how long: seconds from .. to, the size from .. to), per what a size multiplies
_SHAPES = {
    "spike": ((15 * 60, 40 * 60), {"rate": (0.4, 3.0), "ratio": (1.0, 5.0),
                                   "seconds": (0.5, 3.0), "length": (1.0, 6.0)}),
    "drop": ((30 * 60, 2 * HOUR), {"rate": (-1.0, -0.45)}),
    "level_shift": ((4 * HOUR, 24 * HOUR), {"rate": (0.3, 1.2), "ratio": (1.0, 4.0),
                                            "seconds": (0.4, 2.0), "length": (1.0, 4.0)}),
    "drift": ((3 * HOUR, 9 * HOUR), {"rate": (0.4, 2.0), "ratio": (1.0, 4.0),
                                     "seconds": (0.5, 2.0), "length": (1.0, 5.0)}),
}  # fmt: skip


def schedule(
    rng: random.Random, signals: list[Signal], counts: dict[str, int], start: int, end: int
) -> list[Anomaly]:
    """``counts[kind]`` anomalies at random times in [start, end), each on a signal the kind
    fits (a drop only where a drop matters), at least 6 hours from any other on the same
    signal; a level shift of a signal whose drop matters goes down one time in three."""
    placed: list[Anomaly] = []
    for kind in KINDS:
        (shortest, longest), sizes = _SHAPES[kind]
        fits = [s for s in signals if s.kind in sizes and (kind != "drop" or s.both_ways)]
        for _ in range(counts.get(kind, 0)):
            for _attempt in range(200):
                signal = rng.choice(fits)
                low, high = sizes[signal.kind]
                size = rng.uniform(low, high)
                if kind == "level_shift" and signal.both_ways and rng.random() < 1 / 3:
                    size = -rng.uniform(0.55, 0.9)
                begin = rng.randrange(start, end - longest - 6 * HOUR, 60)
                candidate = Anomaly(
                    signal.key, kind, begin, begin + rng.randrange(shortest, longest, 60), size
                )
                if not any(_near(candidate, other) for other in placed):
                    placed.append(candidate)
                    break
    return sorted(placed, key=lambda a: a.start)


def _near(a: Anomaly, b: Anomaly) -> bool:
    return a.key == b.key and a.start < b.end + 6 * HOUR and b.start < a.end + 6 * HOUR
