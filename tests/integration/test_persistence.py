"""Prometheus restarted keeps what it had recorded."""

from __future__ import annotations

import time

import pytest

from .conftest import query, until
from .runtimes import Stack

pytestmark = pytest.mark.integration

EXPR = 'count_over_time(up{job="node"}[1m])'


def test_samples_survive_a_prometheus_restart(stack: Stack) -> None:
    until(lambda: query(stack, EXPR), 30, 1, "node samples")
    moment = str(time.time())
    [before] = query(stack, EXPR, time=moment)
    stack.stop("prometheus")
    stack.start("prometheus")
    [after] = until(lambda: query(stack, EXPR, time=moment), 30, 1, "the same samples back")
    assert after["value"][1] == before["value"][1]
    assert float(after["value"][1]) > 1
