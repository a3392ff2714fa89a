"""What `make lint` checks in the runbooks and in what the dashboards' panels say:

- every runbook page has its sections, in bold at the start of a line (``**Impact.**``):
  SECTIONS, in that order;
- every metric a runbook or a panel (its queries and its description) names exists: the app
  exposes it, an exporter or Prometheus does, or a recording rule produces it
  (stack/producers.py, which docs/metrics.md is generated from).

A word is read as a metric name when it is shaped like one (``pg_up``, ``sms_cost_total``,
``job:http_requests:rate5m``) and begins with the first word of a known metric (``pg``,
``sms``, ``job``): a misspelt or invented metric of a known family is caught, prose is not.
Label names are not metrics, nor the few names in NOT_METRICS, which read like metrics but name
something else.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from . import ROOT, producers, rules
from .dashboards.shared import panels

SECTIONS = ("Meaning", "Impact", "Check", "Fix", "Verify", "Escalate")
# Words in the runbooks that read like metric names and are not, each with what it is.
NOT_METRICS = {
    "app_metrics": "the in-app metrics module (a Python package)",
    "assistant:queue:sms": "the SMS queue's Redis key",
    "http_2xx": "blackbox_exporter's module (blackbox/blackbox.yml)",
    "http_code": "a variable of curl's --write-out",
    "pg_stat_activity": "PostgreSQL's view of its sessions, queried with psql",
    "pg_terminate_backend": "PostgreSQL's function that ends a session",
    "redis_exporter": "the exporter's program",
    "scrape_interval": "a field of prometheus.yml",
    "sms_cost_rate": "a value of the anomaly rules' signal label (anomaly.rules.yml)",
    "sms_failure_ratio": "a value of the anomaly rules' signal label (anomaly.rules.yml)",
    "sms_sent": "a value of the anomaly rules' signal label (anomaly.rules.yml)",
    "scrape_timeout": "a field of prometheus.yml",
}
_SECTION = re.compile(r"^\*\*([A-Z][\w ]*)\.\*\*", re.MULTILINE)
# a name with an underscore, or a recorded level:metric:operations name
_WORD = re.compile(
    r"(?<![\w:./$|'\"-])([a-z][a-zA-Z0-9]*(?:_[a-zA-Z0-9]+)+|\w+:\w+:\w+)(?![\w:/-])"
)
_HISTOGRAM_SERIES = ("_bucket", "_count", "_sum")
_LABELS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_MATCHER = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)")


def section_problems(text: str) -> list[str]:
    """The sections a page lacks, or has out of order."""
    found = [s for s in _SECTION.findall(text) if s in SECTIONS]
    missing = [s for s in SECTIONS if s not in found]
    if missing:
        return [f"no {', '.join(missing)} section (**{missing[0]}.** at a line's start)"]
    if found != sorted(found, key=SECTIONS.index):
        return [f"sections out of order: {', '.join(found)}; expected {', '.join(SECTIONS)}"]
    return []


def named_metrics(text: str, namespaces: set[str]) -> set[str]:
    """The words of a text that read as metric names of a known family."""
    return {w for w in _WORD.findall(text) if re.split(r"[_:]", w)[0] in namespaces}


def unknown(text: str, known: set[str], labels: set[str]) -> list[str]:
    """The metric names a text uses that nothing produces, sorted."""
    namespaces = {re.split(r"[_:]", name)[0] for name in known}
    return sorted(named_metrics(text, namespaces) - known - labels - NOT_METRICS.keys())


def known_metrics(root: Path = ROOT) -> tuple[set[str], set[str]]:
    """Every metric that exists (a histogram with its series), and every label name the
    producers and the rules know."""
    produced = producers.produced(root)
    known = set(produced)
    for name, p in produced.items():
        if p.kind in ("histogram", "summary"):
            known |= {name + suffix for suffix in _HISTOGRAM_SERIES}
    labels = {label for p in produced.values() for label in p.labels}
    for path in rules.rule_files(root):
        text = path.read_text()
        labels |= {x.strip() for group in _LABELS.findall(text) for x in group.split(",")}
        labels |= set(_MATCHER.findall(text))
    return known, labels - known


def runbook_metrics(root: Path = ROOT) -> set[str]:
    """The known metrics the runbooks name (an exporter's metric a runbook names for
    diagnosis has its place in stack/producers.py EXPOSED, as one a rule reads)."""
    known, _ = known_metrics(root)
    namespaces = {re.split(r"[_:]", name)[0] for name in known}
    pages = (root / "runbooks").glob("*.md")
    return {n for page in pages for n in named_metrics(page.read_text(), namespaces)} & known


Metrics = tuple[set[str], set[str]]  # known_metrics(): the metrics, the label names


def runbook_problems(
    root: Path = ROOT, metrics: Metrics | None = None
) -> tuple[list[str], list[str]]:
    """(pages without their sections, pages naming a metric that does not exist)."""
    known, labels = metrics or known_metrics(root)
    sections, names = [], []
    for page in sorted((root / "runbooks").glob("*.md")):
        text = page.read_text()
        if page.name != "README.md":
            sections += [f"runbooks/{page.name}: {p}" for p in section_problems(text)]
        names += [
            f"runbooks/{page.name}: names {name}, which no app, exporter or recording rule "
            "produces" + _hint(name, known)
            for name in unknown(text, known, labels)
        ]
    return sections, names


def panel_problems(root: Path = ROOT, metrics: Metrics | None = None) -> list[str]:
    """Panels whose queries or description name a metric that does not exist."""
    known, labels = metrics or known_metrics(root)
    problems = []
    for path in sorted((root / "grafana" / "dashboards").rglob("*.json")):
        board = json.loads(path.read_text())
        for panel in panels(board):
            text = "\n".join(
                [panel.get("description", "")]
                + [t.get("expr", "") for t in panel.get("targets", [])]
            )
            problems += [
                f"{path.relative_to(root)} panel {panel.get('title', '?')!r}: names {name}, "
                "which no app, exporter or recording rule produces" + _hint(name, known)
                for name in unknown(text, known, labels)
            ]
    return problems


def _hint(name: str, known: set[str]) -> str:
    """The nearest known names, if any share the name's first two words."""
    stem = "_".join(name.split("_")[:2])
    near = sorted(k for k in known if k.startswith(stem))[:3]
    return f" (known: {', '.join(near)})" if near else ""
