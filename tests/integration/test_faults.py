"""Real faults: a component stopped delivers its alert to the webhook receiver with the right
labels, summary and runbook; started again, the resolved notification follows. The time from
fault to delivery is printed at the end of the run (and measured by `make bench`)."""

from __future__ import annotations

import pytest

from stack import ROOT

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
    assert (ROOT / fired["annotations"]["runbook_url"]).is_file()
    assert resolved["labels"] == fired["labels"]
    FIGURES.append(
        f"{name}: {fault.alertname} delivered {delivered_after:.1f} s after the fault, "
        f"resolved {resolved_after:.1f} s after the restart"
    )
