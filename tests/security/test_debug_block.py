"""``POST /debug/block``, the route that blocks the event loop on purpose (for the integration
suite's blocked loop), and the metrics listener of a real ``python -m assistant``: the route is
off by default, refused with the settings of stage and prod, demands the API token and bounds
its seconds; while it blocks the loop, the listener still answers (behind its token) and shows
the stall."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from assistant.config import Settings
from stack.processes import free_port
from tests.security.conftest import Attack
from tests.security.processes import (
    REPO,
    TOKEN,
    Reply,
    Running,
    assistant,
    assistant_env,
    exchange,
    request,
)

pytestmark = pytest.mark.server

AttackFn = Callable[[str, str], Attack]
API = {"Authorization": f"Bearer {TOKEN}"}
METRICS_TOKEN = "security-metrics-token"
SCRAPER = {"Authorization": f"Bearer {METRICS_TOKEN}"}


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, int]]:
    metrics_port = free_port()
    with assistant(
        tmp_path_factory.mktemp("debug"),
        ASSISTANT_DEBUG_ROUTES="true",
        ASSISTANT_METRICS_PORT=str(metrics_port),
        ASSISTANT_METRICS_TOKEN=METRICS_TOKEN,
    ) as running:
        yield running, metrics_port


def refused(a: Attack, port: int, raw: bytes, status: int) -> Reply:
    """Send ``raw``; the attack is blocked when the answer is ``status``."""
    reply = exchange(port, raw)
    a.happened = str(reply.status)
    assert reply.status == status, reply
    a.blocked = True
    return reply


def stall(port: int) -> float:
    reply = exchange(port, request("GET", "/metrics", SCRAPER))
    assert reply.status == 200, reply
    for family in text_string_to_metric_families(reply.body.decode()):
        if family.name == "event_loop_stall_seconds":
            return sum(s.value for s in family.samples)
    raise AssertionError("no event_loop_stall_seconds")


def test_the_block_route_is_off_by_default(tmp_path: Path, attack: AttackFn) -> None:
    a = attack("POST /debug/block with the API token, routes off (default)", "404")
    with assistant(tmp_path) as running:
        reply = exchange(running.port, request("POST", "/debug/block?seconds=1", API))
    a.happened = str(reply.status)
    assert reply.status == 404
    a.blocked = True


@pytest.mark.parametrize("environment", ["stage", "prod"])
def test_stage_and_prod_refuse_to_start_with_the_debug_routes(
    tmp_path: Path, attack: AttackFn, environment: str
) -> None:
    a = attack(f"ASSISTANT_DEBUG_ROUTES=true in {environment}", "refuses to start, says why")
    with pytest.raises(ValueError, match=f"ASSISTANT_DEBUG_ROUTES is refused in {environment}"):
        Settings(environment=environment, debug_routes=True)
    env = assistant_env(free_port(), ASSISTANT_DEBUG_ROUTES="true")
    env["ASSISTANT_ENVIRONMENT"] = environment
    done = subprocess.run(
        [sys.executable, "-m", "assistant"], cwd=REPO, env=env, capture_output=True, timeout=60
    )
    output = (done.stdout + done.stderr).decode(errors="replace")
    a.happened = f"exit {done.returncode}"
    assert done.returncode != 0 and "ASSISTANT_DEBUG_ROUTES is refused" in output, output
    a.blocked = True


def test_the_block_route_demands_the_api_token_and_bounds_its_seconds(
    dev: tuple[Running, int], attack: AttackFn
) -> None:
    running, _ = dev
    a = attack("POST /debug/block without the API token", "401")
    refused(a, running.port, request("POST", "/debug/block?seconds=1"), 401)
    a = attack("POST /debug/block?seconds=11 (over 10 s)", "422")
    replies = [
        exchange(running.port, request("POST", f"/debug/block?seconds={s}", API))
        for s in ("11", "0", "-1", "nan", "x")
    ]
    a.happened = ", ".join(str(r.status) for r in replies)
    assert [r.status for r in replies] == [422] * 5
    a.blocked = True


def test_the_listener_answers_behind_its_token_while_the_route_blocks_the_loop(
    dev: tuple[Running, int], attack: AttackFn
) -> None:
    running, metrics_port = dev
    a = attack("GET /metrics on the metrics listener without the metrics token", "401")
    reply = refused(a, metrics_port, request("GET", "/metrics"), 401)
    assert reply.headers["www-authenticate"] == 'Bearer realm="metrics"'
    assert stall(metrics_port) == 0
    with ThreadPoolExecutor(1) as pool:
        blocking = pool.submit(
            exchange, running.port, request("POST", "/debug/block?seconds=3", API), 15.0
        )
        seen = 0.0
        deadline = time.monotonic() + 10
        for _ in range(100):  # bounded: 100 scrapes, 10 s
            seen = stall(metrics_port)
            assert not blocking.done(), "the scrape was answered only after the block"
            if seen > 0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert seen > 0, running.log_tail()
        assert blocking.result().status == 200
