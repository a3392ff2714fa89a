"""The mutation check of the alert rules: does `promtool test rules` notice a broken alert?

Every alert's ``expr`` is parsed by a real PromQL parser (promql-parser, Rust, through its
Python bindings) and changed in one place at a time; its ``for:`` too. Each such mutant is
written into a throwaway copy of the rules as promtool loads them
(prometheus/generated/rules/), and promtool runs the test files whose ``rule_files`` load
the mutated file. A mutant is killed when a test fails; a survivor is a change the tests
cannot see. docs/testing.md says what is changed and how to read the score.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import promql_parser as pp
import yaml

from .promql import metric_names, seconds
from .rules import LOADED, alerts, read, rule_files, rule_test_files
from .settings import StackError
from .tools import run, tool

WORKERS = 2
TIME_BOUND = 170.0  # seconds for the whole run; mutants not started by then are "not run"

COMPARISONS = {">": ">=", ">=": ">", "<": "<=", "<=": "<"}
SET_OPERATORS = ("and", "or", "unless")
# each aggregation into the ones a slip of the pen or a wrong idea gives
AGGREGATIONS = {"sum": ("avg", "max"), "avg": ("sum", "max"), "max": ("sum", "min"),
                "min": ("max", "avg"), "count": ("sum",)}  # fmt: skip
FUNCTIONS = {"rate": ("irate", "increase"), "irate": ("rate",), "increase": ("rate", "irate")}
# over values that are never negative, these are above 0 together (min is not: all above 0)
SOME = {"sum", "avg", "max"}
# rate and increase differ by a constant factor: the same sign
SAME_SIGN = {frozenset({"rate", "increase"})}


@dataclass(frozen=True)
class Mutant:
    file: str  # the rule file's name, e.g. api.rules.yml
    alert: str
    change: str  # what was changed, for a person: "threshold 0.05 → 0.1"
    expr: str
    for_: str | None  # None: no for:


@dataclass
class Score:
    killed: list[Mutant] = field(default_factory=list)
    survived: list[Mutant] = field(default_factory=list)
    not_run: list[Mutant] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return len(self.killed) + len(self.survived)

    @property
    def complete(self) -> bool:
        return not self.not_run

    @property
    def percent(self) -> float:
        return 100.0 * len(self.killed) / self.total if self.total else 0.0

    def report(self) -> str:
        lines = [
            f"mutation: {len(self.killed)}/{self.total} mutants killed ({self.percent:.1f} %) "
            f"in {self.seconds:.0f} s"
        ]
        if self.not_run:
            lines.append(f"mutation: {len(self.not_run)} mutants not run: time bound reached")
        lines += [f"  survived: {m.file} {m.alert}: {m.change}" for m in self.survived]
        return "\n".join(lines)


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
    child = item.node
    for ancestor in item.ancestors:
        if isinstance(ancestor, pp.AggregateExpr) and _op(ancestor) in AGGREGATIONS:
            child = ancestor
            continue
        if isinstance(ancestor, pp.ParenExpr) or (
            isinstance(ancestor, pp.BinaryExpr) and _op(ancestor) == "+" and _not_negative(ancestor)
        ):
            child = ancestor
            continue
        if _comparison_with_number(ancestor):
            other = ancestor.rhs if _is_number(ancestor.rhs) else ancestor.lhs
            return other is not child and other.val == 0
        return False
    return False


def _not_negative(node: Any) -> bool:
    """Rates and increases, their sums, averages, maxima and minima."""
    if isinstance(node, pp.ParenExpr):
        return _not_negative(node.expr)
    if isinstance(node, pp.Call):
        return node.func.name in FUNCTIONS
    if isinstance(node, pp.AggregateExpr):
        return _op(node) in AGGREGATIONS and _op(node) != "count" and _not_negative(node.expr)
    if isinstance(node, pp.BinaryExpr):
        return _op(node) == "+" and _not_negative(node.lhs) and _not_negative(node.rhs)
    return False


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
        for rule in alerts(read(path)):
            expr, duration = rule["expr"], rule.get("for")
            changes = list(expression_mutants(expr))
            repeated = {c for c, _ in changes if [d for d, _ in changes].count(c) > 1}
            counted: dict[str, int] = {}
            for change, mutated in changes:
                if change in repeated:  # the same change at another place: its number
                    counted[change] = counted.get(change, 0) + 1
                    change = f"{change} (#{counted[change]})"
                found.append(Mutant(path.name, rule["alert"], change, mutated, duration))
            canonical = str(pp.parse(expr))
            for change, new in for_mutants(duration):
                found.append(Mutant(path.name, rule["alert"], change, canonical, new))
    return found


# ---- running them ------------------------------------------------------------------------
#
# An alert feeds no other rule (no expression here reads ALERTS; `mutants` refuses one that
# does), so a mutant of alert A can change nothing but A's own test cases. Each mutant's copy
# of the rules therefore keeps A and the recording rules it reads (and theirs), no other
# rule, and each test file loading A's file keeps only its alert_rule_test cases of A: the
# same verdict as the whole suite, at a fraction of promtool's evaluations (the SmsCostSpike
# case evaluates 28 hours).


def _unchanged(root: Path) -> list[Mutant]:
    """Each alert as the parser prints it back, unchanged: its trimmed tests must pass, or a
    killed mutant would prove nothing."""
    return [
        Mutant(path.name, rule["alert"], "unchanged", str(pp.parse(rule["expr"])), rule.get("for"))
        for path in rule_files(root, LOADED)
        for rule in alerts(read(path))
    ]


def _cases_of(test: dict[str, Any], alert: str) -> dict[str, Any] | None:
    cases = [c for c in test.get("alert_rule_test", []) if c["alertname"] == alert]
    if not cases:
        return None
    kept = {k: v for k, v in test.items() if k not in ("alert_rule_test", "promql_expr_test")}
    return {**kept, "alert_rule_test": cases}


def _write_copy(root: Path, work: Path, mutant: Mutant) -> list[str]:
    """The loaded rules and tests copied into ``work``, ``mutant.alert`` the only alert (as
    the mutant has it) and its cases the only tests: the test files to run, or [] when no
    case tests that alert."""
    (work / "tests").mkdir(parents=True)
    needed = _recorded_for(root, mutant.expr)
    for path in rule_files(root, LOADED):
        document = read(path)
        for group in document["groups"]:
            keep = [r for r in group["rules"] if r.get("record") in needed]
            group["rules"] = [
                r for r in group["rules"] if r in keep or r.get("alert") == mutant.alert
            ]
            for rule in group["rules"]:
                if rule.get("alert") == mutant.alert and path.name == mutant.file:
                    rule["expr"] = mutant.expr
                    rule.pop("for", None)
                    if mutant.for_ is not None:
                        rule["for"] = mutant.for_
        document["groups"] = [g for g in document["groups"] if g["rules"]]
        _dump(document, work / path.name)
    written = []
    for path in rule_test_files(root, LOADED):
        document = read(path)
        if mutant.file not in {Path(f).name for f in document.get("rule_files", [])}:
            continue
        tests = [t for t in (_cases_of(t, mutant.alert) for t in document["tests"]) if t]
        if tests:
            _dump({**document, "tests": tests}, work / "tests" / path.name)
            written.append(path.name)
    return written


def _recorded_for(root: Path, expr: str) -> set[str]:
    """The recording rules an expression reads, and those they read, and so on."""
    records: dict[str, set[str]] = {}
    for path in rule_files(root, LOADED):
        for group in read(path)["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    records.setdefault(rule["record"], set()).update(metric_names(rule["expr"]))
    needed: set[str] = set()
    reading = metric_names(expr)
    while reading - needed:
        name = (reading - needed).pop()
        needed.add(name)
        reading |= records.get(name, set())
    return needed & records.keys()


def _dump(document: Any, path: Path) -> None:
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))


def _verdict(root: Path, work: Path, mutant: Mutant) -> tuple[bool, str]:
    """(killed, promtool's message); a mutant no case tests survives without a run."""
    tests = _write_copy(root, work, mutant)
    out = (
        run([tool(root, "promtool"), "test", "rules", *tests], cwd=work / "tests") if tests else ""
    )
    shutil.rmtree(work)
    return bool(out), out


def check(
    root: Path,
    *,
    workers: int = WORKERS,
    time_bound: float = TIME_BOUND,
    only: Callable[[Mutant], bool] | None = None,
    progress: Callable[[str], None] = print,
) -> Score:
    """Run every mutant (those ``only`` keeps), ``workers`` promtool processes at a time,
    after the unchanged alerts; mutants not started within ``time_bound`` are not run."""
    begun = time.monotonic()
    keep = only or (lambda m: True)
    todo = [m for m in mutants(root) if keep(m)]
    unchanged = [m for m in _unchanged(root) if keep(m)]
    score = Score()
    with tempfile.TemporaryDirectory(prefix="mutation-") as scratch:

        def one(numbered: tuple[int, Mutant]) -> tuple[Mutant, bool | None, str]:
            number, mutant = numbered
            if time.monotonic() - begun > time_bound:
                return mutant, None, ""
            return mutant, *_verdict(root, Path(scratch) / str(number), mutant)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            broken = [f"{m.file} {m.alert}, printed back by the parser unchanged, fails its "
                      f"tests:\n{out}" for m, killed, out in pool.map(one, enumerate(unchanged))
                      if killed]  # fmt: skip
            if broken:
                raise StackError("\n".join(broken))
            progress(f"mutation: {len(todo)} mutants, {workers} workers, bound {time_bound:.0f} s")
            numbered = enumerate(todo, len(unchanged))
            for done, (mutant, killed, _) in enumerate(pool.map(one, numbered), 1):
                bucket = {True: score.killed, False: score.survived, None: score.not_run}
                bucket[killed].append(mutant)
                if done % 25 == 0 or done == len(todo):
                    progress(
                        f"mutation: {done}/{len(todo)} run, {len(score.killed)} killed, "
                        f"{time.monotonic() - begun:.0f} s"
                    )
    score.seconds = time.monotonic() - begun
    return score
