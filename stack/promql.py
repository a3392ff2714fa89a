"""Just enough PromQL reading for the checks: the vector selectors of an expression."""

from __future__ import annotations

import re

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
            "or", "unless", "offset", "inf", "nan"}  # fmt: skip
# `by (a, b)` and friends: label lists, not selectors
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_TOKEN = re.compile(
    r'"(?:[^"\\]|\\.)*"'  # a string outside a selector
    r"|\[[^\]]*\]"  # a range or subquery
    r"|(?<![\w.])(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)?(?P<labels>\{[^}]*\})?(?P<call>\s*\()?"
)


def selectors(expr: str) -> list[str]:
    """The vector selectors of a PromQL expression (names, label matchers), skipping
    functions, aggregations, keywords, grouping labels, strings and durations."""
    found = []
    for match in _TOKEN.finditer(_GROUPING.sub(" ", expr)):
        name, labels = match["name"], match["labels"]
        if match["call"] or not (name or labels) or name in KEYWORDS:
            continue
        found.append((name or "") + (labels or ""))
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads (selectors without a name are left out)."""
    return {s.split("{")[0] for s in selectors(expr) if not s.startswith("{")}


# ---- how far back an expression reads ----------------------------------------------------

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_DURATION = re.compile(r"(\d+)(ms|[smhdwy])")
_RANGE = re.compile(r"\[\s*(\w+)\s*(?::[^\]]*)?\]")  # [5m], and a subquery's [3d:5m]
_OFFSET = re.compile(r"\boffset\s+(-?\w+)")


def seconds(duration: str) -> float:
    """A Prometheus duration (``90s``, ``1h30m``, ``4d``) in seconds; ValueError if it is none."""
    parts = _DURATION.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"{duration!r} is not a Prometheus duration")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def lookback(expr: str) -> float:
    """At most how many seconds back an expression reads: its longest range plus its longest
    offset (an upper bound)."""
    ranges = [seconds(r) for r in _RANGE.findall(expr)]
    offsets = [seconds(o) for o in _OFFSET.findall(expr) if not o.startswith("-")]
    return max(ranges, default=0) + max(offsets, default=0)


def offset(expr: str) -> float:
    """The longest ``offset`` of an expression, in seconds: what it reads returns nothing on
    a stack younger than that (a range alone returns what there is)."""
    return max((seconds(o) for o in _OFFSET.findall(expr) if not o.startswith("-")), default=0)
