"""The faults the suite and `make bench` inject, and how their notifications are found."""

from __future__ import annotations

import functools
import json
import time
import urllib.parse
import urllib.request
from typing import Any, NamedTuple

from stack import ROOT
from stack.promql import seconds
from stack.rules import alerts, read, rule_files

from .runtimes import Stack

# a down alert waits its `for:` before it is sent (1 min for the pages, 2 min for a ticket
# such as node_exporter's TargetDown); this only bounds a broken run
DELIVERY_TIMEOUT = 180.0


class Fault(NamedTuple):
    component: str
    alertname: str
    labels: dict[str, str]
    receiver: str = "oncall"  # a page; a warning goes to its team's channel


FAULTS = {
    "PostgreSQL stopped": Fault("postgres", "PostgresDown", {"job": "postgres"}),
    "Redis stopped": Fault("redis", "RedisDown", {"job": "redis"}),
    "the API stopped": Fault(
        "api", "TargetDown", {"job": "personal_assistant_api", "component": "api"}
    ),
    "node_exporter stopped": Fault("node-exporter", "TargetDown", {"job": "node"}, "platform"),
}


def notification(stack: Stack, fault: Fault, status: str, since: float) -> dict[str, Any] | None:
    """The first alert of ``fault`` with ``status`` that reached its receiver after
    ``since`` (epoch seconds), with the time it arrived."""
    query = urllib.parse.urlencode({"receiver": fault.receiver})
    with urllib.request.urlopen(f"{stack.receiver}/notifications?{query}", timeout=10) as r:
        items = json.loads(r.read())
    for item in items:
        if item["received_at"] < since:
            continue
        for alert in item["payload"]["alerts"]:
            labels = alert["labels"]
            if (
                alert["status"] == status
                and labels["alertname"] == fault.alertname
                and fault.labels.items() <= labels.items()
            ):
                return alert | {"received_at": item["received_at"]}  # type: ignore[no-any-return]
    return None


def wait_for(stack: Stack, fault: Fault, status: str, since: float) -> dict[str, Any]:
    deadline = time.monotonic() + DELIVERY_TIMEOUT
    while (found := notification(stack, fault, status, since)) is None:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{fault.alertname} {status}: not delivered within {DELIVERY_TIMEOUT:g} s\n"
                + diagnosis(stack, fault)
            )
        time.sleep(0.25)
    return found


def diagnosis(stack: Stack, fault: Fault) -> str:
    """Where the chain stopped: the rule's state in Prometheus, the job's targets, the alert
    in Alertmanager (for a failed delivery's message)."""
    job = fault.labels.get("job", "")
    lines = []
    for title, url in (
        ("Prometheus ALERTS", f"{stack.prometheus}/api/v1/query?" + urllib.parse.urlencode(
            {"query": f'ALERTS{{alertname="{fault.alertname}"}}'})),
        (f"targets of job {job}", f"{stack.prometheus}/api/v1/targets?state=active"),
        ("Alertmanager", f"{stack.alertmanager}/api/v2/alerts"),
    ):  # fmt: skip
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.loads(response.read())
        except OSError as exc:
            lines.append(f"{title}: {exc}")
            continue
        if title.startswith("targets"):
            body = [
                {k: t[k] for k in ("scrapeUrl", "health", "lastError", "lastScrapeDuration")}
                for t in body["data"]["activeTargets"]
                if t["labels"].get("job") == job
            ]
        elif title == "Alertmanager":
            body = [a for a in body if a["labels"].get("alertname") == fault.alertname]
        else:
            body = body["data"]["result"]
        lines.append(f"{title}: {json.dumps(body)[:1500]}")
    return "\n".join(lines)


class Outcome(NamedTuple):
    fired: dict[str, Any]
    resolved: dict[str, Any]
    delivered_after: float  # seconds from the fault to the firing notification
    resolved_after: float  # seconds from the restart to the resolved one

    @property
    def beyond_for(self) -> float:
        """The delivery less its rule's `for:`: the time to see the fault and to send it."""
        return self.delivered_after - waited(self.fired)


@functools.cache
def alert_rules() -> tuple[dict[str, Any], ...]:
    """Every alerting rule of prometheus/rules/, read once."""
    return tuple(rule for path in rule_files(ROOT) for rule in alerts(read(path)))


def waited(alert: dict[str, Any]) -> float:
    """The `for:` (seconds) of the rule that sent ``alert`` (a notification's alert): the rule
    of its name whose own labels it carries (TargetDown has three rules; those whose labels
    are the same wait as long)."""
    labels = alert["labels"]
    fors = {
        seconds(rule.get("for", "0s"))
        for rule in alert_rules()
        if rule["alert"] == labels["alertname"]
        and rule.get("labels", {}).items() <= labels.items()
    }  # fmt: skip
    if len(fors) != 1:
        raise AssertionError(f"{labels['alertname']}: rules with for: {sorted(fors)}")
    return fors.pop()


def inject(stack: Stack, faults: dict[str, Fault]) -> dict[str, Outcome]:
    """Every fault at once: each alert waits out its own `for:` (a minute or two), so together
    they take as long as the slowest, not the sum. Stops each component, waits for every
    alert, starts them all again, waits for every resolution. Each fault's time counts from
    its own stop (on Compose each `stop` takes seconds: the last would otherwise carry the
    others')."""
    began = {}
    for name, fault in faults.items():
        began[name] = time.time()
        stack.stop(fault.component)
    fired = {}
    try:
        for name, fault in faults.items():
            fired[name] = wait_for(stack, fault, "firing", began[name])
    finally:
        restart = time.time()
        stack.start(*(fault.component for fault in faults.values()))
    outcomes = {}
    for name, fault in faults.items():
        resolved = wait_for(stack, fault, "resolved", restart)
        outcomes[name] = Outcome(
            fired[name], resolved, fired[name]["received_at"] - began[name],
            resolved["received_at"] - restart,
        )  # fmt: skip
    return outcomes
