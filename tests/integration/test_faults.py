"""Real faults: a component stopped delivers its alert to the webhook receiver with the right
labels, summary and runbook; started again, the resolved notification follows. The faults are
injected together (each alert waits its own `for:`). The time from fault to delivery is
printed at the end of the run (and measured by `make bench`)."""

from __future__ import annotations

import pytest

from stack import runbooks

from .conftest import FIGURES
from .faults import FAULTS, Outcome, inject
from .runtimes import Stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def outcomes(stack: Stack) -> dict[str, Outcome]:
    return inject(stack, FAULTS)


@pytest.mark.parametrize("name", FAULTS)
def test_a_fault_is_delivered_then_resolved(outcomes: dict[str, Outcome], name: str) -> None:
    fault, outcome = FAULTS[name], outcomes[name]
    fired, resolved = outcome.fired, outcome.resolved
    # a page reaches the on-call; anything else is its team's ticket
    assert fired["labels"]["severity"] == ("critical" if fault.receiver == "oncall" else "warning")
    assert fired["labels"]["env"] == "dev"
    assert fired["labels"]["instance"] in fired["annotations"]["summary"]
    assert fired["annotations"]["description"]
    page = runbooks.page(fired["annotations"]["runbook_url"])
    assert page is not None and page.is_file(), fired["annotations"]["runbook_url"]
    assert resolved["labels"] == fired["labels"]
    FIGURES.append(
        f"{name}: {fault.alertname} delivered {outcome.delivered_after:.1f} s after the fault "
        f"({outcome.beyond_for:.1f} s beyond its for:; all faults at once), resolved "
        f"{outcome.resolved_after:.1f} s after the restart"
    )
