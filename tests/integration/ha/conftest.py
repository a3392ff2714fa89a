"""The HA topology's stack for this package's tests (`make test-integration` runs it before the
single topology's suite): dev with TOPOLOGY=ha natively, the API as three replicas, every
port free. Started once for the
package, stopped by PID at its end, whatever happens."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from ..conftest import FIGURES, warm_up
from ..runtimes import NativeStack

API_REPLICAS = 3


@pytest.fixture(scope="package")
def ha() -> Iterator[NativeStack]:
    if os.environ.get("STACK_TEST_RUNTIME", "auto") == "compose":
        pytest.skip("the HA module runs natively (on the local engine: not yet)")
    begin = time.monotonic()
    stack = NativeStack(topology="ha", api_replicas=API_REPLICAS)
    FIGURES.append(f"HA (native): stack up, every target up: {time.monotonic() - begin:.1f} s")
    try:
        warm_up(stack)
        yield stack
    finally:
        stack.close()


def url_of(stack: NativeStack, component: str) -> str:
    return f"http://127.0.0.1:{stack.ports[component]}"
