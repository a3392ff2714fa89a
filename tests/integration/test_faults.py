"""Real faults: a component stopped delivers its alert to the webhook receiver with the right
labels, summary and runbook; started again, the resolved notification follows. The time from
fault to delivery is printed at the end of the run (and measured by `make bench`)."""

from __future__ import annotations

import pytest

from stack import runbooks

from .conftest import FIGURES
from .faults import FAULTS, inject
from .runtimes import Stack

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", FAULTS)
def test_a_fault_is_delivered_then_resolved(stack: Stack, name: str) -> None:
    fault = FAULTS[name]
    fired, resolved, delivered_after, resolved_after = inject(stack, fault)
    assert fired["labels"]["severity"] == "critical"
    assert fired["labels"]["env"] == "dev"
    assert fired["labels"]["instance"] in fired["annotations"]["summary"]
    assert fired["annotations"]["description"]
    page = runbooks.page(fired["annotations"]["runbook_url"])
    assert page is not None and page.is_file(), fired["annotations"]["runbook_url"]
    assert resolved["labels"] == fired["labels"]
    FIGURES.append(
        f"{name}: {fault.alertname} delivered {delivered_after:.1f} s after the fault, "
        f"resolved {resolved_after:.1f} s after the restart"
    )
