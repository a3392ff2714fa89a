"""The metrics listener of real uvicorn servers: answered while a route blocks the event loop,
shared by the workers in multiprocess mode, and a port it cannot bind stops the server."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from .conftest import (
    HOST,
    REPO,
    Scrape,
    Server,
    StartServer,
    free_port,
    parse,
    send_requests,
    stop_process_group,
)

pytestmark = pytest.mark.server

BLOCK_SECONDS = 3.0


def scrape_listener(port: int) -> Scrape:
    response = httpx.get(f"http://{HOST}:{port}/metrics", timeout=10.0)
    assert response.status_code == 200, (response.status_code, response.text[:500])
    return Scrape(parse(response.text), 0, response.text)


def block_in_background(server: Server, pool: ThreadPoolExecutor) -> Future[httpx.Response]:
    url = f"{server.url}/block?seconds={BLOCK_SECONDS}"
    return pool.submit(httpx.get, url, timeout=BLOCK_SECONDS + 10)


def scrapes_until_stalled(port: int, blocking: Future[httpx.Response]) -> list[Scrape]:
    """Scrape the listener until its stall gauge shows (at most 100 scrapes or 10 s), each
    answered while the blocking request is still going on."""
    scrapes: list[Scrape] = []
    deadline = time.monotonic() + 10
    for _ in range(100):
        scrapes.append(scrape_listener(port))
        assert not blocking.done(), "a scrape was answered only after the block ended"
        if scrapes[-1].total("event_loop_stall_seconds") > 0 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return scrapes


def test_the_listener_answers_while_a_route_blocks_the_loop_and_shows_the_stall(
    start_server: StartServer,
) -> None:
    port = free_port()
    server = start_server(env={"TEST_APP_METRICS_PORT": str(port)})
    assert scrape_listener(port).total("event_loop_stall_seconds") == 0
    with ThreadPoolExecutor(1) as pool:
        blocking = block_in_background(server, pool)
        scrapes = scrapes_until_stalled(port, blocking)
        assert scrapes[-1].total("event_loop_stall_seconds") > 0, server.log_tail()
        assert blocking.result().status_code == 200
    after = scrape_listener(port)
    # the beat due during the block ran more than a second late: in the histogram now
    count = after.total("event_loop_lag_seconds_count")
    assert after.total("event_loop_lag_seconds_bucket", le="1.0") < count
    assert "the event loop has run nothing for" in server.log_tail()  # with its stack
    assert "time.sleep(min(seconds, 10.0))" in server.log_tail()


def test_with_workers_every_listener_serves_the_summed_metrics_and_the_longest_stall(
    start_server: StartServer, tmp_path: Path
) -> None:
    port = free_port()
    server = start_server(
        workers=2, mp_dir=tmp_path / "mp", env={"TEST_APP_METRICS_PORT": str(port)}
    )
    served = send_requests(server, "/pid?block=0.002", 100)
    assert len(served) == 2, served  # both workers counted some
    deadline = time.monotonic() + 10
    for _ in range(200):  # a worker counts just after its response: poll (bounded)
        totals = [scrape_listener(port).total("http_requests_total", endpoint="/pid")]
        if totals[-1] == 100 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    for _ in range(10):  # whichever worker's listener answers: the sum of both
        assert scrape_listener(port).total("http_requests_total", endpoint="/pid") == 100
    with ThreadPoolExecutor(1) as pool:
        blocking = block_in_background(server, pool)  # one worker blocked, one not
        scrapes = scrapes_until_stalled(port, blocking)
        assert scrapes[-1].total("event_loop_stall_seconds") > 0, server.log_tail()
        assert len(scrapes[-1].select("event_loop_stall_seconds")) == 1  # livemax: one series
        blocking.result()


def test_a_metrics_port_in_use_stops_the_server_at_startup_and_says_why(
    tmp_path: Path,
) -> None:

    with socket.socket() as occupied:
        occupied.bind((HOST, 0))
        occupied.listen(1)
        port = occupied.getsockname()[1]
        log = tmp_path / "uvicorn.log"
        command = [
            sys.executable, "-m", "uvicorn", "tests.server.app:app", "--host", HOST,
            "--port", str(free_port()), "--app-dir", str(REPO),
        ]  # fmt: skip
        env = {"TEST_APP_METRICS_PORT": str(port), "PATH": "/usr/bin:/bin"}
        with log.open("wb") as out:
            proc = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        try:
            code = proc.wait(timeout=30)
        finally:
            stop_process_group(proc)
    text = log.read_text()
    assert code != 0, text
    assert f"app_metrics could not start its metrics listener on port {port}" in text, text
    assert "Application startup failed" in text, text
