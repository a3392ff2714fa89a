"""Every dashboard panel's query, its template variables filled in, returns data from the
live Prometheus."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from stack import ROOT
from stack.lint import expressions, panels
from stack.promql import metric_names
from stack.rules import needs_history

from .conftest import get, query, traffic, until
from .runtimes import Stack

pytestmark = pytest.mark.integration

BOARDS = sorted((ROOT / "grafana" / "dashboards").rglob("*.json"))
# Grafana's own variables, as it would fill them for the last 5 minutes at a 1 s scrape
BUILTIN = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}
WAIT = 90.0  # traffic must have produced every kind of sample once
# what a stack younger than a day cannot show: the anomaly baselines (the same hour one to
# three weeks ago); their panels' value lines are checked, their bands are not
YOUNG = needs_history(ROOT, 86400.0)


def cases(*, young: bool = False) -> list[tuple[str, str, dict]]:
    """Every panel query (``young``: only those that need more history than a test stack has)."""
    found = []
    for path in BOARDS:
        board = json.loads(path.read_text())
        for panel in panels(board):
            for target in panel.get("targets", []):
                expr = target.get("expr")
                if expr and bool(metric_names(expr) & YOUNG) == young:
                    found.append((f"{path.stem}: {panel['title']}", expr, board))
    return found


def test_only_the_anomaly_baselines_need_history() -> None:
    assert {where.split(":")[0] for where, _, _ in cases(young=True)} == {"anomalies"}


def fill(stack: Stack, expr: str, board: dict) -> str:
    for variable in board.get("templating", {}).get("list", []):
        match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", variable.get("definition", ""))
        if match:
            values = get(f"{stack.prometheus}/api/v1/label/{match[2]}/values",
                         **{"match[]": match[1]})["data"]  # fmt: skip
            assert values, f"variable {variable['name']}: no values"
            # as Grafana fills a regular expression: each value escaped, and every backslash
            # doubled inside PromQL's double-quoted string (an instance's dots: 127\\.0...)
            escaped = (re.escape(v).replace("\\", "\\\\") for v in values)
            expr = expr.replace(f"${variable['name']}", "|".join(escaped))
    for name, value in BUILTIN.items():
        expr = expr.replace(name, value)
    return expr


def test_every_dashboard_is_checked() -> None:
    assert BOARDS and cases()
    assert all(expr for _, expr in expressions(json.loads(BOARDS[0].read_text())))


@pytest.fixture(scope="module")
def busy(stack: Stack) -> Iterator[Stack]:
    """The stack under extra traffic while its panels are read, so that a 5xx panel's 1-minute
    window holds a 5xx (the stack's own mix gives about 1.5 a minute: a CI run saw none)."""
    with traffic(stack):
        yield stack


@pytest.mark.parametrize(("where", "expr", "board"), cases(), ids=[c[0] for c in cases()])
def test_every_panel_query_returns_data(busy: Stack, where: str, expr: str, board: dict) -> None:
    filled = fill(busy, expr, board)
    until(lambda: query(busy, filled), WAIT, 1.0, f"{where}: no data for {filled}")
