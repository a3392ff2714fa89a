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
