"""The dev Alertmanager configuration in a real Alertmanager (Debian's 0.25) delivering to
the real webhook receiver: routing by severity and team, the Watchdog route, inhibition
(which amtool cannot test: a dead dependency silences only what follows from it, an API SLO
page leaves the SMS alerts notifying) and the message fields."""

from __future__ import annotations

import json
import shutil
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import pytest

from stack import ROOT, runbooks
from stack.processes import free_port
from stack.render import alertmanager_config
from stack.tools import checkable

from .conftest import Process
from .test_receiver import notifications

ALERTMANAGER_APT = "apt-get install -y --no-install-recommends prometheus-alertmanager"
DEADLINE = 20.0


def alert(name: str, severity: str, **labels: str) -> dict:
    return {
        "labels": {"alertname": name, "severity": severity, "env": "dev", **labels},
        "annotations": {
            "summary": f"{name} summary",
            "description": f"{name} description",
            "runbook_url": runbooks.url(name),
        },
        "startsAt": datetime.now(UTC).isoformat(),
    }


API = {"job": "personal_assistant_api"}
POSTGRES_DOWN = alert(
    "PostgresDown", "critical", team="database", outage="postgres", job="postgres",
    instance="pe:9187",
)  # fmt: skip
VAR_MOUNT = {"team": "platform", "job": "node", "instance": "ne:9100", "mountpoint": "/var"}


class Scenario(NamedTuple):
    """What fires first (``causes``), what follows (``effects``), what each receiver path gets
    and which alerts must be held back by inhibition."""

    causes: list[dict]
    effects: list[dict]
    delivered: dict[str, set[str]]
    suppressed: set[str]


SCENARIOS = {
    "a dead dependency and a dead target silence their consequences": Scenario(
        causes=[
            POSTGRES_DOWN,
            alert("TargetDown", "warning", team="platform", job="node", instance="ne:9100"),
        ],
        effects=[
            alert("Watchdog", "none", team="platform"),
            # follows from the dead database
            alert(
                "DatabaseHealthCheckFailing",
                "warning",
                team="backend",
                dependency="postgres",
                instance="api:8000",
                **API,
            ),
            # the outside probe of the API's overall health, failing with its database
            alert(
                "ApiProbeFailing",
                "critical",
                team="backend",
                job="blackbox",
                instance="http://api:8000/health/overall",
            ),
            # the same target Prometheus cannot scrape
            alert("HostDiskFilling", "warning", team="platform", job="node", instance="ne:9100"),
            # elsewhere
            alert("TaskBacklog", "warning", team="backend", instance="w:80", **API),
        ],
        delivered={
            "/watchdog": {"Watchdog"},
            "/oncall": {"PostgresDown"},
            "/platform": {"PostgresDown", "TargetDown"},
            "/backend": {"TaskBacklog"},
        },
        suppressed={"DatabaseHealthCheckFailing", "ApiProbeFailing", "HostDiskFilling"},
    ),
    # issue 17: an SLO page has no `instance`; the old `equal: [env, job, instance]` counted
    # the absent label as equal and silenced every instance-less warning of the API job
    "an API SLO page leaves the SMS alerts notifying": Scenario(
        causes=[
            alert(
                "ApiAvailabilityBudgetBurnFast",
                "critical",
                team="backend",
                slo="availability",
                **API,
            ),
            POSTGRES_DOWN,
            alert("HostDiskWillFillInHours", "critical", **VAR_MOUNT),
        ],
        effects=[
            alert("SmsCostSpike", "warning", team="backend", provider="twilio", **API),
            alert("SmsFailureRatioHigh", "warning", team="backend", provider="twilio", **API),
            alert("OAuthRefreshFailures", "warning", team="backend", provider="google", **API),
            # the same news as the page: inhibited
            alert("ApiHighErrorRatio", "warning", team="backend", **API),
            # a real consequence of the dead database: inhibited
            alert(
                "DatabasePoolSaturated",
                "warning",
                team="backend",
                dependency="postgres",
                instance="api:8000",
                **API,
            ),
            # the same mount, said less urgently: inhibited
            alert("HostDiskAlmostFull", "warning", **VAR_MOUNT),
            # one filling mount says nothing of the host's memory
            alert("HostMemoryPressure", "warning", team="platform", job="node", instance="ne:9100"),
        ],
        delivered={
            "/oncall": {"ApiAvailabilityBudgetBurnFast", "PostgresDown", "HostDiskWillFillInHours"},
            "/backend": {
                "ApiAvailabilityBudgetBurnFast",
                "SmsCostSpike",
                "SmsFailureRatioHigh",
                "OAuthRefreshFailures",
            },
            "/platform": {"PostgresDown", "HostDiskWillFillInHours", "HostMemoryPressure"},
        },
        suppressed={"ApiHighErrorRatio", "DatabasePoolSaturated", "HostDiskAlmostFull"},
    ),
}


@pytest.fixture
def stack(processes: list[Process], tmp_path: Path) -> tuple[str, str]:
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.fail(f"Alertmanager not installed: {ALERTMANAGER_APT}", pytrace=False)
    receiver = f"http://127.0.0.1:{free_port()}"
    processes.append(
        Process(
            [sys.executable, str(ROOT / "receiver" / "webhook_receiver.py"),
             "--port", receiver.rsplit(":", 1)[1]],
            tmp_path / "receiver.log", receiver + "/-/healthy",
        )
    )  # fmt: skip
    config = checkable(alertmanager_config("dev"), ROOT, tmp_path)
    config = config.replace("http://receiver:9095", receiver)
    (tmp_path / "alertmanager.yml").write_text(config)
    url = f"http://127.0.0.1:{free_port()}"
    processes.append(
        Process(
            [binary, f"--config.file={tmp_path / 'alertmanager.yml'}",
             f"--storage.path={tmp_path / 'am'}", f"--web.listen-address={url[7:]}",
             "--cluster.listen-address=", f"--web.external-url={url}"],
            tmp_path / "alertmanager.log", url + "/-/ready",
        )
    )  # fmt: skip
    return url, receiver


def post(alertmanager: str, alerts: list[dict]) -> None:
    request = urllib.request.Request(
        f"{alertmanager}/api/v2/alerts",
        data=json.dumps(alerts).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def listed(alertmanager: str) -> set[str]:
    with urllib.request.urlopen(f"{alertmanager}/api/v2/alerts", timeout=5) as response:
        return {a["labels"]["alertname"] for a in json.loads(response.read())}


@pytest.mark.parametrize("scenario", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_routing_and_inhibition_in_a_real_alertmanager(
    stack: tuple[str, str], scenario: Scenario
) -> None:
    alertmanager, receiver = stack
    # the causes first, as Prometheus would have sent them while the consequences were still
    # pending: inhibition is decided when a group is flushed, and Alertmanager's inhibitor
    # learns of new alerts asynchronously (on a loaded machine, later than a 1 s group_wait)
    post(alertmanager, scenario.causes)
    deadline = time.monotonic() + DEADLINE
    while not {a["labels"]["alertname"] for a in scenario.causes} <= listed(alertmanager):
        assert time.monotonic() < deadline, "the causes were not listed"
        time.sleep(0.2)
    time.sleep(1)  # the inhibitor's own subscription, beside the API's store
    post(alertmanager, scenario.effects)

    deadline = time.monotonic() + DEADLINE
    while (got := delivered(receiver)) != scenario.delivered:
        assert time.monotonic() < deadline, f"after {DEADLINE} s: {got}"
        time.sleep(0.2)

    with urllib.request.urlopen(f"{alertmanager}/api/v2/alerts", timeout=5) as response:
        state = {a["labels"]["alertname"]: a["status"] for a in json.loads(response.read())}
    for name, status in state.items():
        held = name in scenario.suppressed
        assert status["state"] == ("suppressed" if held else "active"), (name, status)
        assert bool(status["inhibitedBy"]) == held, (name, status)

    time.sleep(2)  # longer than group_wait: an inhibited alert would have arrived by now
    assert delivered(receiver) == scenario.delivered
    [page] = [n["payload"] for n in notifications(receiver) if n["path"] == "/oncall"][:1]
    first = page["alerts"][0]
    assert first["annotations"]["runbook_url"] == runbooks.url(first["labels"]["alertname"])
    assert first["annotations"]["summary"] and first["annotations"]["description"]
    assert page["externalURL"] == alertmanager


def delivered(receiver: str) -> dict[str, set[str]]:
    got: dict[str, set[str]] = {}
    for n in notifications(receiver):
        names = {a["labels"]["alertname"] for a in n["payload"]["alerts"]}
        got.setdefault(n["path"], set()).update(names)
    return got
