"""Real faults: a component stopped delivers its alert to the webhook receiver with the right
labels, summary and runbook; started again, the resolved notification follows. The time from
fault to delivery is printed at the end of the run (and by `make bench`)."""

from __future__ import annotations

import time
from typing import NamedTuple

import pytest

from stack import ROOT

from .conftest import FIGURES, get, until
from .runtimes import Stack

pytestmark = pytest.mark.integration

DELIVERY_TIMEOUT = 60.0  # the dev profile's target is 15 s; this only bounds a broken run


class Fault(NamedTuple):
    component: str
    alertname: str
    labels: dict[str, str]


FAULTS = {
    "PostgreSQL stopped": Fault("postgres", "PostgresDown", {"job": "postgres"}),
    "Redis stopped": Fault("redis", "RedisDown", {"job": "redis"}),
    "the API stopped": Fault(
        "api", "TargetDown", {"job": "personal_assistant_api", "component": "api"}
    ),
    "node_exporter stopped": Fault("node-exporter", "TargetDown", {"job": "node"}),
}


def notification(stack: Stack, fault: Fault, status: str, since: float) -> dict | None:
    """The first alert of ``fault`` with ``status`` that reached the oncall receiver."""
    for item in get(f"{stack.receiver}/notifications", receiver="oncall"):
        if item["received_at"] < since:
            continue
        for alert in item["payload"]["alerts"]:
            labels = alert["labels"]
            if (
                alert["status"] == status
                and labels["alertname"] == fault.alertname
                and fault.labels.items() <= labels.items()
            ):
                return alert | {"received_at": item["received_at"]}
    return None


@pytest.mark.parametrize("name", FAULTS)
def test_a_fault_is_delivered_then_resolved(stack: Stack, name: str) -> None:
    fault = FAULTS[name]
    begin = time.time()
    stack.stop(fault.component)
    try:
        fired = until(lambda: notification(stack, fault, "firing", begin), DELIVERY_TIMEOUT,
                      what=f"{fault.alertname} delivered")  # fmt: skip
    finally:
        restart = time.time()
        stack.start(fault.component)
    assert fired["labels"]["severity"] == "critical"
    assert fired["labels"]["env"] == "dev"
    assert fired["labels"]["instance"] in fired["annotations"]["summary"]
    assert fired["annotations"]["description"]
    assert (ROOT / fired["annotations"]["runbook_url"]).is_file()
    resolved = until(lambda: notification(stack, fault, "resolved", restart), DELIVERY_TIMEOUT,
                     what=f"{fault.alertname} resolved")  # fmt: skip
    FIGURES.append(
        f"{name}: {fault.alertname} delivered {fired['received_at'] - begin:.1f} s after the "
        f"fault, resolved {resolved['received_at'] - restart:.1f} s after the restart"
    )
