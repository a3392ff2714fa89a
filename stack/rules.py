"""The rule files: authored in prometheus/rules/ (``<domain>.rules.yml``, promtool tests in
``tests/``), loaded from prometheus/generated/rules/ (same names), which `make generate`
writes from them with every alert's ``runbook_url`` stamped by stack/runbooks.py: into each
alert's annotations and into each ``exp_annotations`` a test expects of it. Prometheus (both
runtimes), `promtool check rules` and `promtool test rules` read the generated copies; the
authored files carry no runbook_url, so the base address and the page rule live in one place.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from . import runbooks
from .promql import metric_names, offset
from .settings import StackError
from .yamlfile import load_yaml

AUTHORED = Path("prometheus") / "rules"
LOADED = Path("prometheus") / "generated" / "rules"


def rule_files(root: Path, folder: Path = AUTHORED) -> list[Path]:
    return sorted((root / folder).glob("*.rules.yml"))


def rule_test_files(root: Path, folder: Path = AUTHORED) -> list[Path]:
    return sorted((root / folder / "tests").glob("*.test.yml"))


def read(path: Path) -> Any:
    try:
        return load_yaml(path.read_text())
    except yaml.YAMLError as exc:
        raise StackError(f"{path}: not valid YAML: {exc}") from exc


def alerts(document: Any) -> Iterator[dict[str, Any]]:
    for group in document["groups"]:
        yield from (rule for rule in group["rules"] if "alert" in rule)


def expected_alerts(document: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(alert name, one of its exp_alerts)`` for every alert a test file expects."""
    for test in document.get("tests", []):
        for case in test.get("alert_rule_test", []):
            for expected in case.get("exp_alerts") or []:
                yield case["alertname"], expected


def needs_history(root: Path, seconds: float) -> set[str]:
    """The recorded names whose rules read data more than ``seconds`` old (an ``offset``),
    directly or through another recorded name: a stack younger than that has none of them yet
    (the anomaly baselines read the same hour one to three weeks ago)."""
    recording: dict[str, str] = {}
    for path in rule_files(root):
        for group in read(path)["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    name = rule["record"]
                    recording[name] = f"{recording.get(name, '')} {rule['expr']}"
    found = {name for name, expr in recording.items() if offset(expr) > seconds}
    for _ in range(len(recording)):  # bounded: a pass adds a name or changes nothing
        more = found | {n for n, expr in recording.items() if metric_names(expr) & found}
        if more == found:
            break
        found = more
    return found


# ---- the generated copies ------------------------------------------------------------------


def loaded_path(source: Path, root: Path) -> Path:
    """Where Prometheus and promtool read the written file ``source``."""
    return root / LOADED / source.relative_to(root / AUTHORED)


def stamped(source: Path) -> str:
    """A rule or test file as written, with every alert's runbook_url added."""
    document = read(source)
    if source.name.endswith(".test.yml"):
        for name, expected in expected_alerts(document):
            annotations = expected.get("exp_annotations", {})
            expected["exp_annotations"] = {**annotations, "runbook_url": runbooks.url(name)}
    else:
        for rule in alerts(document):
            annotations = rule.get("annotations", {})
            rule["annotations"] = {**annotations, "runbook_url": runbooks.url(rule["alert"])}
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1 << 16)


class _Dumper(yaml.SafeDumper):
    """Block style with lists indented under their key (as yamllint expects), multi-line
    strings (expressions) as ``|`` blocks, and no anchors."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


# ---- what make lint checks ------------------------------------------------------------------


def alert_problems(root: Path) -> list[str]:
    """Every alert carries what on-call needs: a severity, a summary and a description as
    written, no runbook_url typed (it is stamped), and, as Prometheus loads it, a runbook_url
    that reaches a page in runbooks/."""
    problems = []
    for path in rule_files(root):
        for rule in alerts(read(path)):
            where = f"{path.relative_to(root)}: {rule['alert']}"
            annotations = rule.get("annotations", {})
            if "severity" not in rule.get("labels", {}):
                problems.append(f"{where}: no severity label")
            problems += [f"{where}: no {k} annotation" for k in ("summary", "description")
                         if not annotations.get(k)]  # fmt: skip
            if "runbook_url" in annotations:
                problems.append(f"{where}: runbook_url typed; {_STAMPED}")
    for path in rule_test_files(root):
        for name, expected in expected_alerts(read(path)):
            if "runbook_url" in expected.get("exp_annotations", {}):
                problems.append(f"{path.relative_to(root)}: {name}: runbook_url typed; {_STAMPED}")
    names = set()
    for path in rule_files(root, LOADED):
        for rule in alerts(read(path)):
            names.add(rule["alert"])
            problems += _runbook_problems(f"{path.relative_to(root)}: {rule['alert']}", rule, root)
    for page, shared in runbooks.SHARED_PAGES.items():
        problems += [f"stack/runbooks.py: SHARED_PAGES[{page!r}] names {alert}, not an alert"
                     for alert in shared if alert not in names]  # fmt: skip
    return problems


_STAMPED = "`make generate` stamps it from stack/runbooks.py: remove it"


def _runbook_problems(where: str, rule: dict[str, Any], root: Path) -> list[str]:
    url = rule.get("annotations", {}).get("runbook_url", "")
    target = runbooks.page(url, root)
    if not url:
        return [f"{where}: no runbook_url annotation: run `make generate`"]
    if target is None:
        return [f"{where}: runbook {url} is not a page under {runbooks.BASE_URL}"]
    if not target.is_file():
        return [
            f"{where}: runbook {url} does not exist: write runbooks/{target.name}, or share "
            "a page (stack/runbooks.py SHARED_PAGES)"
        ]
    return []
