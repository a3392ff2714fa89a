"""Where the runbooks are read, and the one rule that gives each alert its page.

An alert's page is ``runbooks/<alert name>.md``, except for the alerts listed in SHARED_PAGES,
which share one procedure; its ``runbook_url`` is BASE_URL plus that file name, so the link
works in Slack, e-mail and Grafana. No rule file and no rule test types it: `make generate`
stamps it into the rules Prometheus loads and into the tests promtool runs (stack/rules.py), as
the monitoring mixins apply their runbook URL pattern to every alert. The dashboards link the
same addresses (``alert_runbooks``). `make lint` fails when an alert has no page.

To publish the runbooks at another address, replace BASE_URL, then `make generate`.
"""

from __future__ import annotations

import re
from pathlib import Path

from . import ROOT
from .yamlfile import load_yaml

BASE_URL = "https://git.example.com/personal-assistant/monitoring/-/blob/main/runbooks/"
# Pages that serve several alerts; every other alert has a page named after itself.
SHARED_PAGES = {
    "ApiHighLatency.md": ("ApiHighLatencyP95", "ApiHighLatencyP99"),
    "ApiAvailabilityBudgetBurn.md": (
        "ApiAvailabilityBudgetBurnFast",
        "ApiAvailabilityBudgetBurnSlow",
    ),
    "ApiLatencyBudgetBurn.md": ("ApiLatencyBudgetBurnFast", "ApiLatencyBudgetBurnSlow"),
    "HostDisk.md": ("HostDiskWillFillInHours", "HostDiskWillFillIn24h", "HostDiskAlmostFull"),
    "SmsCostSpike.md": ("SmsCostSpike", "SmsCostBudgetExceeded"),
    "HostCpuAndLoad.md": ("HostCpuHigh", "HostLoadHigh"),
    "QueueProblems.md": ("TaskFailureRatioHigh", "TaskQueueBacklog", "SmsQueueBacklog"),
    "PhoneVerificationAbuse.md": (
        "PhoneVerificationSmsPumping",
        "PhoneVerificationSmsSurge",
        "PhoneVerificationClientLimitReached",
    ),
}


def page_name(alert: str) -> str:
    """The page rule: the file in runbooks/ that tells what to do when ``alert`` fires."""
    return next((p for p, alerts in SHARED_PAGES.items() if alert in alerts), f"{alert}.md")


def url(alert: str) -> str:
    """The ``runbook_url`` every alert named ``alert`` carries."""
    return BASE_URL + page_name(alert)


def page(url: str, root: Path = ROOT) -> Path | None:
    """The runbooks/ file an address names, or None when it is not under BASE_URL."""
    if not url.startswith(BASE_URL) or "/" in url[len(BASE_URL) :]:
        return None
    return root / "runbooks" / url[len(BASE_URL) :]


def alert_runbooks(root: Path = ROOT) -> dict[str, str]:
    """``{alert name: runbook_url}`` for every alert in prometheus/rules/."""
    found = {}
    for path in sorted((root / "prometheus" / "rules").glob("*.rules.yml")):
        for group in load_yaml(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    found[rule["alert"]] = url(rule["alert"])
    return found


def named_alerts(text: str, alert_runbooks: dict[str, str]) -> list[str]:
    """The known alerts a text names, in the order they appear."""
    found = re.findall(r"\b[A-Z]\w+\b", text)
    return list(dict.fromkeys(name for name in found if name in alert_runbooks))
