"""The HA topology's stack for this package's tests (`make test-integration` runs it before the
single topology's suite): dev with TOPOLOGY=ha on the runtime under test (STACK_TEST_RUNTIME),
the API as three replicas, every published port free. Started once for the package, stopped
at its end, whatever happens.

In CI (CI set, as .ci/run sets it) the module is smaller, never skipped: shorter outages and
one duplicate window per fault; every figure is still printed."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from ..conftest import FIGURES, warm_up
from ..runtimes import Stack, start_stack

API_REPLICAS = 3
IN_CI = bool(os.environ.get("CI"))


@pytest.fixture(scope="package")
def ha() -> Iterator[Stack]:
    begin = time.monotonic()
    stack = start_stack(topology="ha", api_replicas=API_REPLICAS)
    FIGURES.append(
        f"HA ({stack.runtime}): stack up, every target up: {time.monotonic() - begin:.1f} s"
    )
    try:
        warm_up(stack)
        yield stack
    finally:
        stack.close()


def url_of(stack: Stack, component: str) -> str:
    return stack.url(component)
