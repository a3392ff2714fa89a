"""Where the runbooks are read: every alert's ``runbook_url`` is BASE_URL plus its page's file
name in runbooks/, so the link works in Slack, e-mail and Grafana. `make lint` fails when an
alert points elsewhere or at a page that does not exist; the dashboards link the same
addresses, read from the alerts.

To publish the runbooks at another address, replace BASE_URL here and the same prefix in
prometheus/rules/ (and their tests), then `make generate`.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from . import ROOT

BASE_URL = "https://git.example.com/personal-assistant/monitoring/-/blob/main/runbooks/"


def page(url: str, root: Path = ROOT) -> Path | None:
    """The runbooks/ file an address names, or None when it is not under BASE_URL."""
    if not url.startswith(BASE_URL) or "/" in url[len(BASE_URL) :]:
        return None
    return root / "runbooks" / url[len(BASE_URL) :]


def alert_runbooks(root: Path = ROOT) -> dict[str, str]:
    """``{alert name: runbook_url}`` for every alert in prometheus/rules/."""
    found = {}
    for path in sorted((root / "prometheus" / "rules").glob("*.rules.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    found[rule["alert"]] = rule.get("annotations", {}).get("runbook_url", "")
    return found


def named_alerts(text: str, alert_runbooks: dict[str, str]) -> list[str]:
    """The known alerts a text names, in the order they appear."""
    found = re.findall(r"\b[A-Z]\w+\b", text)
    return list(dict.fromkeys(name for name in found if name in alert_runbooks))
