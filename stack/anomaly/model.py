"""The usual life of the service, minute by minute: a weekday's daily curve, quieter weekends,
a slow trend, slow wobble and counting noise. Everything traffic drives follows ``load``."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

DAY = 86400
WEEKDAY = (1.0, 1.0, 1.0, 1.0, 0.95, 0.6, 0.5)  # Monday .. Sunday
TREND_PER_WEEK = 0.02


def daily(hour: float) -> float:
    """0.2 at night, 1 at the early afternoon peak, a bump in the evening."""
    day = max(0.0, math.sin(math.pi * (hour - 6) / 16)) if 6 <= hour <= 22 else 0.0
    evening = 0.25 * math.exp(-(((hour - 20) / 1.5) ** 2))
    return 0.2 + 0.8 * day**1.5 + evening


def load(t: int, start: int, quiet_days: dict[int, float]) -> float:
    """The traffic level at Unix time ``t`` (1: a weekday's peak), the month beginning at
    ``start``; a quiet day (a holiday: its index from ``start``) scales a whole day down."""
    moment = datetime.fromtimestamp(t, UTC)
    hour = moment.hour + moment.minute / 60
    weeks = (t - start) / (7 * DAY)
    quiet = quiet_days.get((t - start) // DAY, 1.0)
    return daily(hour) * WEEKDAY[moment.weekday()] * (1 + TREND_PER_WEEK * weeks) * quiet


class Wobble:
    """Slow multiplicative noise: a mean-reverting walk around 1 (``sd`` its spread, about
    ``minutes`` its memory)."""

    def __init__(self, rng: random.Random, sd: float, minutes: float = 30) -> None:
        self.rng, self.keep = rng, math.exp(-1 / minutes)
        self.step = sd * math.sqrt(1 - self.keep**2)
        self.level = 0.0

    def next(self) -> float:
        self.level = self.keep * self.level + self.rng.gauss(0, self.step)
        return math.exp(self.level)


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson count (Knuth's method below 30, the normal approximation above)."""
    if mean <= 0:
        return 0
    if mean >= 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def lognormal_cdf(x: float, median: float, sigma: float) -> float:
    return 0.5 * (1 + math.erf(math.log(x / median) / (sigma * math.sqrt(2))))
