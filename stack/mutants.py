"""The mutants of the alert rules: every alert broken one way at a time.

Each alert's ``expr`` is parsed by a real PromQL parser (promql-parser: the Rust parser's
Python bindings) and printed back with one change (a number, a comparison, a window, an
offset, an aggregation, a rate function, a clause of and/or/unless); its ``for:`` is set to 0
and halved. Changes that cannot change what an alert does are not made (docs/testing.md
lists them). stack/mutation.py runs the rule tests on each.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import promql_parser as pp

from .promql import metric_names, seconds
from .rules import LOADED, alerts, read, rule_files
from .settings import StackError

COMPARISONS = {">": ">=", ">=": ">", "<": "<=", "<=": "<"}
SET_OPERATORS = ("and", "or", "unless")
# each aggregation into the ones a slip of the pen or a wrong idea gives
AGGREGATIONS = {"sum": ("avg", "max"), "avg": ("sum", "max"), "max": ("sum", "min"),
                "min": ("max", "avg"), "count": ("sum",)}  # fmt: skip
FUNCTIONS = {"rate": ("irate", "increase"), "irate": ("rate",), "increase": ("rate", "irate")}
# over values that are never negative, these are above 0 together, and 0 together (min is
# not: all above 0)
SOME = {"sum", "avg", "max"}
# never negative: counters (`_total`) and states (`up`, `pg_up`, `redis_rdb_last_bgsave_status`,
# vmalert's `vmalert_alerting_rules_error`: 0 or 1), as the exporters and app_metrics name them
NOT_NEGATIVE_SUFFIXES = ("_total", "_up", "_status", "_error")
# of values never negative, these are never negative either
OVER_TIME = ("max_over_time", "min_over_time", "last_over_time", "avg_over_time")
# gauges that count things, never between two integers: `< 1` and `< 0.5` agree on them
WHOLE_SUFFIXES = ("_discovered",)
# rate and increase differ by a constant factor: the same sign
SAME_SIGN = {frozenset({"rate", "increase"})}


@dataclass(frozen=True)
class Mutant:
    file: str  # the rule file's name, e.g. api.rules.yml
    alert: str
    change: str  # what was changed, for a person: "number 0.05 → 0.1"
    expr: str
    for_: str | None  # None: no for:
    # which of the file's alerts of this name (TargetDown has three rules): 1, 2, ...; 0 when
    # the name is the rule's alone
    nth: int = 0

    @property
    def name(self) -> str:
        return f"{self.alert} #{self.nth}" if self.nth else self.alert


def numbered_alerts(document: Any) -> list[tuple[int, dict[str, Any]]]:
    """``(nth, rule)`` for a rule file's alerts: nth as Mutant.nth has it."""
    rules = list(alerts(document))
    names = [r["alert"] for r in rules]
    numbered = []
    for i, rule in enumerate(rules):
        several = names.count(rule["alert"]) > 1
        numbered.append((names[: i + 1].count(rule["alert"]) if several else 0, rule))
    return numbered


# ---- the mutants of one expression -------------------------------------------------------


@dataclass(frozen=True)
class _Node:
    index: int  # in the parser's depth-first post-order (walk and transform agree)
    node: Any
    ancestors: tuple[Any, ...]  # nearest first

    @property
    def parent(self) -> Any:
        return self.ancestors[0] if self.ancestors else None


def _nodes(ast: Any) -> list[_Node]:
    stack: list[Any] = []
    found: list[_Node] = []

    def enter(node: Any) -> None:
        stack.append(node)

    def leave(node: Any) -> None:
        stack.pop()
        found.append(_Node(len(found), node, tuple(reversed(stack))))

    pp.walk(ast, pre_visit=enter, post_visit=leave)
    return found


def _replaced(ast: Any, index: int, replacement: Any) -> str:
    """The expression printed with node ``index`` replaced (by an Expr, or a text to parse)."""
    seen = -1

    def visit(node: Any) -> Any:
        nonlocal seen
        seen += 1
        if seen != index:
            return None
        return pp.parse(replacement) if isinstance(replacement, str) else replacement

    return str(pp.transform(ast, post_visit=visit))


def _number(value: float) -> str:
    return f"{value:.6g}"


def _duration(value: float) -> str:
    return str(pp.display_duration(timedelta(seconds=value)))


def _op(node: Any) -> str:
    return str(node.op).strip()


def _is_number(node: Any) -> bool:
    return isinstance(node, pp.NumberLiteral)


def _comparison_with_number(node: Any) -> bool:
    return (
        isinstance(node, pp.BinaryExpr)
        and _op(node) in COMPARISONS
        and (_is_number(node.lhs) or _is_number(node.rhs))
    )


def _sign_only(item: _Node) -> bool:
    """Only the sign of this node's value reaches the result: it is summed, maxed, ... and
    then compared with 0 (``sum(increase(x[5m])) > 0``)."""
    for ancestor in item.ancestors:
        if isinstance(ancestor, pp.AggregateExpr) and _op(ancestor) in AGGREGATIONS:
            continue
        if isinstance(ancestor, pp.ParenExpr) or (
            isinstance(ancestor, pp.BinaryExpr)
            and _op(ancestor) in ("+", "or")
            and _not_negative(ancestor)
        ):
            continue
        if _comparison_with_number(ancestor) or _state_of_number(ancestor):
            number = ancestor.rhs if _is_number(ancestor.rhs) else ancestor.lhs
            return bool(number.val == 0)
        return False
    return False


def _state_of_number(node: Any) -> bool:
    """``x == 0``: over values never negative, all of them 0."""
    return (
        isinstance(node, pp.BinaryExpr)
        and _op(node) in ("==", "!=")
        and (_is_number(node.lhs) or _is_number(node.rhs))
    )


def _not_negative(node: Any) -> bool:
    """Counters, states, rates and increases; their sums, averages, maxima and minima; the
    values an ``or``, ``and`` or ``unless`` keeps of them, relabelled or not."""
    if isinstance(node, pp.ParenExpr):
        return _not_negative(node.expr)
    if isinstance(node, pp.VectorSelector):
        return bool(node.name) and (node.name == "up" or node.name.endswith(NOT_NEGATIVE_SUFFIXES))
    if isinstance(node, pp.Call):
        if node.func.name in ("label_replace", "label_join"):
            return _not_negative(node.args[0])
        if node.func.name in OVER_TIME and isinstance(node.args[0], pp.MatrixSelector):
            return _not_negative(node.args[0].vector_selector)
        return node.func.name in FUNCTIONS
    if isinstance(node, pp.AggregateExpr):
        return _op(node) in AGGREGATIONS and _op(node) != "count" and _not_negative(node.expr)
    if isinstance(node, pp.BinaryExpr):
        if _op(node) in ("and", "unless"):
            return _not_negative(node.lhs)
        return _op(node) in ("+", "or") and _not_negative(node.lhs) and _not_negative(node.rhs)
    return False


def _whole(node: Any) -> bool:
    if isinstance(node, pp.ParenExpr):
        return _whole(node.expr)
    if isinstance(node, pp.AggregateExpr):
        return _op(node) in ("sum", "max", "min") and _whole(node.expr)
    return isinstance(node, pp.VectorSelector) and str(node.name).endswith(WHOLE_SUFFIXES)


def _quantile_of(item: _Node) -> bool:
    parent = item.parent
    return isinstance(parent, pp.Call) and parent.func.name == "histogram_quantile"


def _counted(node: Any) -> bool:
    """A value that can sit exactly on an integer threshold: a gauge or its aggregation, a
    count of events (not a ratio, a prediction or other arithmetic)."""
    if isinstance(node, pp.ParenExpr):
        return _counted(node.expr)
    if isinstance(node, pp.AggregateExpr):
        return _op(node) in AGGREGATIONS and _counted(node.expr)
    return isinstance(node, pp.VectorSelector) or _not_negative(node)


def _number_mutants(item: _Node) -> Iterator[tuple[str, str]]:
    node, parent = item.node, item.parent
    value = node.val
    if isinstance(parent, pp.Call) and parent.func.name == "vector":
        return  # Watchdog's vector(1): the value is never read
    if isinstance(parent, pp.BinaryExpr):
        if _op(parent) == "-" and value == 1 and _is_number(parent.lhs):
            return  # 1 - ratio: the complement, not a setting
        both = _op(parent) == "*" and _is_number(parent.lhs) and _is_number(parent.rhs)
        if both and str(parent.rhs) == str(node) and str(parent.lhs) != str(node):
            return  # 24 * 3600: the left factor moves the product already
        if _op(parent) in ("==", "!="):
            return  # a state (up == 0) has no other side to move to
    if value == 1 and isinstance(parent, pp.BinaryExpr) and _op(parent) in ("<", ">="):
        other = parent.lhs if _is_number(parent.rhs) else parent.rhs
        if _whole(other):  # `< 1` is `< 0.5` on a count of things; doubled, it moves
            yield "number 1 → 2", "2"
            return
    if value == 0:
        # the first event: an increase of 1 must fire (a gauge above 0 has no first event)
        counted = isinstance(parent, pp.BinaryExpr) and _not_negative(parent.lhs)
        if counted and _op(parent) in (">", ">="):
            yield "number 0 → 1", "1"
        return
    for factor in (0.5, 2):
        yield f"number {_number(value)} → {_number(value * factor)}", _number(value * factor)


def _flip(node: Any) -> Iterator[tuple[str, str]]:
    """``> 3`` → ``>= 3``: only where the compared value can equal an integer threshold (a
    gauge, a count of events)."""
    if not _comparison_with_number(node):
        return
    number, other = (node.rhs, node.lhs) if _is_number(node.rhs) else (node.lhs, node.rhs)
    if number.val != math.floor(number.val) or not _counted(other):
        return
    text, left = str(node), str(node.lhs)
    op = _op(node)
    rest = text[len(left) :].lstrip()
    if not text.startswith(left) or not rest.startswith(op):
        return
    flipped = f"{left} {COMPARISONS[op]}{rest[len(op) :]}"
    yield f"{op} {_number(number.val)} → {COMPARISONS[op]} {_number(number.val)}", flipped


def expression_mutants(expr: str) -> Iterator[tuple[str, str]]:
    """``(change, mutated expression)`` for every single change of ``expr``."""
    ast = pp.parse(expr)
    original = str(ast)
    seen = {original}
    for item in _nodes(ast):
        for change, replacement in _node_mutants(item):
            mutated = _replaced(ast, item.index, replacement)
            if mutated in seen:
                continue  # no change, or one listed already
            seen.add(mutated)
            yield change, mutated


def _node_mutants(item: _Node) -> Iterator[tuple[str, Any]]:
    node = item.node
    if _is_number(node):
        yield from _number_mutants(item)
    elif isinstance(node, pp.BinaryExpr) and _op(node) in SET_OPERATORS:
        op = _op(node)
        yield f"`{op}` clause removed: {_short(node.rhs)}", node.lhs
        if op != "unless":
            yield f"`{op}` clause removed: {_short(node.lhs)}", node.rhs
    elif isinstance(node, pp.BinaryExpr):
        yield from _flip(node)
    elif isinstance(node, pp.AggregateExpr) and _op(node) in AGGREGATIONS:
        op, text = _op(node), str(node)
        for other in AGGREGATIONS[op]:
            if {op, other} <= SOME and _sign_only(item) and _not_negative(node.expr):
                continue  # sum(increase(x)) > 0 and max(increase(x)) > 0 agree everywhere
            if {op, other} == {"sum", "avg"} and _quantile_of(item):
                continue  # every bucket divided by the same count: the same quantile
            yield f"{op} → {other}", other + text[len(op) :]
        modifier = node.modifier
        if modifier is not None and modifier.labels and node.param is None:
            kind = str(modifier.type).rsplit(".", 1)[-1].lower()
            labels = ", ".join(modifier.labels)
            yield f"{op} {kind} ({labels}) → {op}", f"{op}({node.expr})"
    elif isinstance(node, pp.Call) and node.func.name in FUNCTIONS:
        name, text = node.func.name, str(node)
        for other in FUNCTIONS[name]:
            if frozenset({name, other}) in SAME_SIGN and _sign_only(item):
                continue  # rate(x) > 0 and increase(x) > 0 agree everywhere
            yield f"{name} → {other}", other + text[len(name) :]
    elif isinstance(node, pp.MatrixSelector):
        yield from _window_mutants(node)


def _window_mutants(node: Any) -> Iterator[tuple[str, str]]:
    text = str(node)
    window = _duration(node.range.total_seconds())
    for factor in (0.5, 2):
        new = _duration(node.range.total_seconds() * factor)
        yield f"[{window}] → [{new}]", text.replace(f"[{window}]", f"[{new}]", 1)
    offset = node.vector_selector.offset
    if offset is not None and offset.total_seconds() > 0:
        old = _duration(offset.total_seconds())
        for factor in (0.5, 2):
            new = _duration(offset.total_seconds() * factor)
            yield f"offset {old} → {new}", text.replace(f"offset {old}", f"offset {new}", 1)


def _short(node: Any, width: int = 60) -> str:
    text = " ".join(str(node).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def for_mutants(duration: str | None) -> Iterator[tuple[str, str | None]]:
    if not duration or seconds(duration) == 0:
        return  # fires at once already
    yield f"for: {duration} → 0s", None
    yield f"for: {duration} → {_duration(seconds(duration) / 2)}", _duration(seconds(duration) / 2)


def mutants(root: Path) -> list[Mutant]:
    """Every single change of every alert, in file and rule order."""
    readers = [r.get("record") or r.get("alert") for p in rule_files(root, LOADED)
               for g in read(p)["groups"] for r in g["rules"]
               if metric_names(r["expr"]) & {"ALERTS", "ALERTS_FOR_STATE"}]  # fmt: skip
    if readers:  # then an alert feeds another rule, and its mutants need every rule's tests
        raise StackError(f"the mutation check assumes no rule reads ALERTS; {readers} do")
    found = []
    for path in rule_files(root, LOADED):
        for nth, rule in numbered_alerts(read(path)):
            expr, duration = rule["expr"], rule.get("for")
            changes = list(expression_mutants(expr))
            repeated = {c for c, _ in changes if [d for d, _ in changes].count(c) > 1}
            counted: dict[str, int] = {}
            for change, mutated in changes:
                if change in repeated:  # the same change at another place: its number
                    counted[change] = counted.get(change, 0) + 1
                    change = f"{change} (#{counted[change]})"
                found.append(Mutant(path.name, rule["alert"], change, mutated, duration, nth))
            canonical = str(pp.parse(expr))
            for change, new in for_mutants(duration):
                found.append(Mutant(path.name, rule["alert"], change, canonical, new, nth))
    return found
