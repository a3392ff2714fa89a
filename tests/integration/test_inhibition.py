"""Inhibition in the running stack's own Alertmanager, delivering to the stack's receiver:
an API SLO page holds back the API's error-ratio warning (the same news) and leaves the SMS
alerts notifying (issue 17: the old `equal: [env, job, instance]` silenced every
instance-less warning of the API job). The alerts are posted as Prometheus would send them,
with a label of their own so no other test reads them."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from .conftest import get, until
from .runtimes import ENV, Stack

pytestmark = pytest.mark.integration

API = {"job": "personal_assistant_api", "team": "backend", "env": ENV}


def alert(name: str, severity: str, run: str, **labels: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "labels": {"alertname": name, "severity": severity, "test_run": run, **API, **labels},
        "annotations": {"summary": name, "description": f"{name}, posted by {__name__}"},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(minutes=3)).isoformat(),  # resolves by itself
    }


def post(stack: Stack, alerts: list[dict[str, Any]]) -> None:
    request = urllib.request.Request(
        f"{stack.alertmanager}/api/v2/alerts", json.dumps(alerts).encode(),
        {"Content-Type": "application/json"},
    )  # fmt: skip
    urllib.request.urlopen(request, timeout=10).close()


def states(stack: Stack, run: str) -> dict[str, str]:
    return {
        a["labels"]["alertname"]: a["status"]["state"]
        for a in get(f"{stack.alertmanager}/api/v2/alerts")
        if a["labels"].get("test_run") == run
    }


def test_an_slo_page_leaves_the_sms_alerts_notifying(stack: Stack) -> None:
    run = uuid.uuid4().hex[:8]
    page = alert("ApiAvailabilityBudgetBurnFast", "critical", run, slo="availability")
    post(stack, [page])
    # the inhibitor learns of the page asynchronously: the effects come once it is listed
    until(lambda: "ApiAvailabilityBudgetBurnFast" in states(stack, run), 20.0, 0.2,
          "the page listed")  # fmt: skip
    time.sleep(1)
    sms = ("SmsCostSpike", "SmsFailureRatioHigh")
    post(stack, [alert(name, "warning", run, provider="twilio") for name in sms]
         + [alert("ApiHighErrorRatio", "warning", run)])  # fmt: skip

    def delivered() -> set[str]:
        return {
            a["labels"]["alertname"]
            for n in get(f"{stack.receiver}/notifications", receiver="backend")
            for a in n["payload"]["alerts"]
            if a["labels"].get("test_run") == run
        }

    until(lambda: set(sms) <= delivered(), 60.0, 0.5, "the SMS alerts delivered to backend")
    assert states(stack, run) == {
        "ApiAvailabilityBudgetBurnFast": "active",
        "SmsCostSpike": "active",
        "SmsFailureRatioHigh": "active",
        "ApiHighErrorRatio": "suppressed",
    }
    assert "ApiHighErrorRatio" not in delivered()
