"""The mutation check of the alert rules: does `promtool test rules` notice a broken alert?

Each mutant of stack/mutants.py is written into a throwaway copy of the rules as promtool
loads them (prometheus/generated/rules/), and promtool runs the alert's own test cases on
it. A mutant is killed when a test fails; a survivor is a change the tests cannot see.
docs/testing.md says what is changed and how to read the score.
"""

from __future__ import annotations

import copy
import functools
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import promql_parser as pp
import yaml

from .mutants import Mutant, mutants, numbered_alerts
from .promql import metric_names
from .rules import LOADED, read, rule_files, rule_test_files
from .settings import StackError
from .tools import run, tool

WORKERS = 2
# seconds for the whole run; mutants not started by then are "not run". 557 mutants take 240
# to 320 s on 2 cores busy with other work (a third of it PhoneVerificationSmsSurge's 27 hours)
TIME_BOUND = 600.0


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
        lines += [f"  survived: {m.file} {m.name}: {m.change}" for m in self.survived]
        return "\n".join(lines)


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
        Mutant(path.name, rule["alert"], "unchanged", str(pp.parse(rule["expr"])), rule.get("for"),
               nth)
        for path in rule_files(root, LOADED)
        for nth, rule in numbered_alerts(read(path))
    ]  # fmt: skip


def _cases_of(test: dict[str, Any], alert: str) -> dict[str, Any] | None:
    cases = [c for c in test.get("alert_rule_test", []) if c["alertname"] == alert]
    if not cases:
        return None
    kept = {k: v for k, v in test.items() if k not in ("alert_rule_test", "promql_expr_test")}
    return {**kept, "alert_rule_test": cases}


def _write_copy(root: Path, work: Path, mutant: Mutant) -> list[str]:
    """The loaded rules and tests copied into ``work``, ``mutant.alert`` the only alert (the
    mutated rule as the mutant has it, any other rule of that name unchanged) and its cases
    the only tests: the test files to run, or [] when no case tests that alert."""
    (work / "tests").mkdir(parents=True)
    needed = _recorded_for(root, mutant.expr)
    for path in rule_files(root, LOADED):
        document = _read(path)
        for group in document["groups"]:
            keep = [r for r in group["rules"] if r.get("record") in needed]
            group["rules"] = [
                r for r in group["rules"] if r in keep or r.get("alert") == mutant.alert
            ]
        if path.name == mutant.file:
            rule = next(r for n, r in numbered_alerts(document)
                        if r["alert"] == mutant.alert and n == mutant.nth)  # fmt: skip
            rule["expr"] = mutant.expr
            rule.pop("for", None)
            if mutant.for_ is not None:
                rule["for"] = mutant.for_
        document["groups"] = [g for g in document["groups"] if g["rules"]]
        _dump(document, work / path.name)
    written = []
    for path in rule_test_files(root, LOADED):
        document = _read(path)
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
        for group in _read(path)["groups"]:
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


@functools.cache
def _parsed(path: Path, mtime: float) -> Any:
    return read(path)


def _read(path: Path) -> Any:
    """A fresh copy of a file's document, parsed once per run (YAML in Python is slow)."""
    return copy.deepcopy(_parsed(path, path.stat().st_mtime))


_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _dump(document: Any, path: Path) -> None:
    path.write_text(yaml.dump(document, Dumper=_DUMPER, sort_keys=False, allow_unicode=True))


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
            broken = [f"{m.file} {m.name}, printed back by the parser unchanged, fails its "
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
