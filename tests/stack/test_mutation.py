"""The rule tests kill mutants: each alert broken one way at a time (stack/mutants.py), and
`promtool test rules` must notice (stack/mutation.py). The mutants themselves are cases as data."""

from __future__ import annotations

import pytest

from stack import ROOT, mutants, mutation

# issue 17's target: at least 90 % of the mutants killed (the rule tests kill all 553 of the
# alerts as they are; new alerts bring new mutants, and their tests must keep to it)
FLOOR = 90.0

MUTANTS = [
    # (expression, a change it must produce, the mutated expression)
    ("x > 0.05", "number 0.05 → 0.1", "x{} > 0.1"),
    ("x > 0.05", "number 0.05 → 0.025", "x{} > 0.025"),
    ("x > 100", "> 100 → >= 100", "x{} >= 100"),
    ("increase(x[10m]) > 0", "number 0 → 1", "increase(x{}[10m]) > 1"),
    ("increase(x[10m]) > 0", "[10m] → [5m]", "increase(x{}[5m]) > 0"),
    ("sum by (job) (rate(x[5m])) > 1", "sum → avg", "avg by (job)(rate(x{}[5m])) > 1"),
    ("sum by (job) (rate(x[5m])) > 1", "sum by (job) → sum", "sum(rate(x{}[5m])) > 1"),
    ("rate(x[5m]) > 1", "rate → irate", "irate(x{}[5m]) > 1"),
    ("rate(x[1h] offset 1d) > 1", "offset 1d → 12h", "rate(x{}[1h] offset 12h) > 1"),
    ("a > 1 and b > 2", "`and` clause removed: b{} > 2", "a{} > 1"),
    ("(a > 14.4 and b > 14.4) or c", "`or` clause removed: c{}", "(a{} > 14.4 and  b{} > 14.4)"),
    ("max by (i) (x_status) == 0", "max → min", "min by (i)(x_status{}) == 0"),
    ("x_discovered < 1", "number 1 → 2", "x_discovered{} < 2"),
]  # fmt: skip

# changes that cannot change what an alert does, never made
NOT_MUTANTS = [
    ("up == 0", "number"),  # a state has no other side
    ("vector(1)", "number"),  # Watchdog's value is never read
    ("1 - x > 0.1", "number 1 →"),  # the complement
    ("predict_linear(x[6h], 24 * 3600) < 0", "number 3600"),  # 24 moves the product already
    ("sum(increase(x[5m])) > 0", "increase → rate"),  # the same sign
    ("sum(increase(x[5m])) > 0", "sum → max"),  # the same sign
    ("sum(increase(x[1h]) + increase(y[1h])) > 0", "increase → rate"),  # the same sign
    ("x > 0.05", "> 0.05 → >= 0.05"),  # a ratio never equals a threshold in between
    ("x / (y > 0) > 0.9", "number 0 →"),  # a gauge above 0 has no first event
    ("predict_linear(x[6h], 3600) < 0", "< 0 →"),  # a prediction is never exactly 0
    ("x / y > 2", "> 2 →"),  # nor a ratio exactly 2
    ("histogram_quantile(0.9, sum by (le) (x)) > 1", "sum → avg"),  # the same quantile
    # counters and 0/1 states are never negative, nor what or/unless/label_replace keep of them
    ("sum(x_total unless x_total offset 5m) > 0", "sum → max"),
    ('sum(increase(a[5m]) or label_replace(increase(b[5m]), "q", "s", "", "")) > 0', "sum → avg"),
    ("max by (i) (x_status) == 0", "max → sum"),  # all 0 together
    ("x_discovered < 1", "number 1 → 0.5"),  # a count of things: < 1 is < 0.5
]


@pytest.mark.parametrize(("expr", "change", "mutated"), MUTANTS)
def test_each_change_is_one_mutant(expr: str, change: str, mutated: str) -> None:
    assert (change, mutated) in list(mutants.expression_mutants(expr))


@pytest.mark.parametrize(("expr", "change"), NOT_MUTANTS)
def test_changes_that_change_nothing_are_not_made(expr: str, change: str) -> None:
    assert [c for c, _ in mutants.expression_mutants(expr) if c.startswith(change)] == []


def test_for_becomes_zero_and_half() -> None:
    assert list(mutants.for_mutants("5m")) == [
        ("for: 5m → 0s", None),
        ("for: 5m → 2m30s", "2m30s"),
    ]
    assert list(mutants.for_mutants(None)) == []


def test_alerts_of_one_name_are_numbered_in_file_order() -> None:
    document = {"groups": [{"rules": [
        {"alert": "TargetDown", "expr": "a"}, {"record": "r", "expr": "b"},
        {"alert": "Other", "expr": "c"}, {"alert": "TargetDown", "expr": "d"},
    ]}]}  # fmt: skip
    numbered = [(n, r["expr"]) for n, r in mutants.numbered_alerts(document)]
    assert numbered == [(1, "a"), (0, "c"), (2, "d")]


def test_every_alert_has_mutants_and_each_names_its_change() -> None:
    found = mutants.mutants(ROOT)
    names = {m.alert for m in found}
    assert "ApiAvailabilityBudgetBurnFast" in names
    assert len({(m.alert, m.nth, m.change) for m in found}) == len(found)


def test_the_rule_tests_kill_the_mutants(capsys: pytest.CaptureFixture[str]) -> None:
    score = mutation.check(ROOT)
    with capsys.disabled():
        print("\n" + score.report())
    assert score.complete, f"{len(score.not_run)} mutants not run within the time bound"
    assert score.percent >= FLOOR, score.report()
