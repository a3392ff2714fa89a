"""gunicorn with 2 uvicorn workers and PROMETHEUS_MULTIPROC_DIR: counts add up across workers.

gunicorn's master (the arbiter) forks its workers; each worker imports the app after the
fork (no --preload), so app_metrics prepares the directory in the workers, and every
worker of one master belongs to the master's run (``"gunicorn.arbiter" in sys.modules``).

The worker class is uvicorn's own ``uvicorn.workers.UvicornWorker``: uvicorn 0.54 still
ships it, but importing ``uvicorn.workers`` warns that it is deprecated in favour of the
separate ``uvicorn-worker`` package (gunicorn >= 25 also has a native ``-k asgi`` worker).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import gunicorn
import httpx
import pytest

from .conftest import (
    APP,
    HOST,
    Scrape,
    Server,
    free_port,
    launch,
    parse,
    running_servers,
    send_requests,
    wait_for_total,
)
from .test_workers import (
    BLOCKING_ROUTE,
    ROUTE,
    assert_every_scrape_sums_to,
    assert_replacement_completes_the_counts,
    assert_restart_starts_from_zero,
    assert_started_fresh,
    has_route,
    kill_a_worker_mid_request,
    wait_for_replacement,
    write_stale_counter,
)

pytestmark = pytest.mark.server

WORKER_CLASS = "uvicorn.workers.UvicornWorker"
N = 100
# gunicorn >= 25.1 opens a control socket at one fixed path per user ($XDG_RUNTIME_DIR or
# ~/.gunicorn): servers running side by side would share it.
NO_CONTROL_SOCKET = ["--no-control-socket"] if gunicorn.version_info >= (25, 1) else []

StartGunicorn = Callable[..., Server]


@pytest.fixture
def start_gunicorn(tmp_path: Path) -> Iterator[StartGunicorn]:
    """``start_gunicorn(mp_dir, workers=2)`` -> a ready ``Server`` whose ``proc`` is the master.

    The master runs in its own session; its workers stay in its process group, which is
    signalled at teardown (SIGTERM, a bounded wait, SIGKILL) whatever the test's outcome.
    """
    # An empty config file: a gunicorn.conf.py in the working directory is not read.
    config = tmp_path / "gunicorn.conf.py"
    config.write_text("")

    def start(
        mp_dir: Path,
        workers: int = 2,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> Server:
        def command(port: int) -> list[str]:
            return [
                sys.executable, "-m", "gunicorn",
                "--config", str(config),
                "-w", str(workers), "-k", WORKER_CLASS,
                "-b", f"{HOST}:{port}",
                "--graceful-timeout", "5",
                "--log-level", "info",
                *NO_CONTROL_SOCKET,
                *args,
                APP,
            ]  # fmt: skip

        server = launch(
            "gunicorn", command, tmp_path, workers, mp_dir, env, drop_env=("GUNICORN_CMD_ARGS",)
        )
        started.append(server)
        return server

    with running_servers() as started:
        yield start


def parent_pid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def send_to_every_worker(server: Server, n: int, rounds: int = 5) -> tuple[int, Counter[int]]:
    """Send ``n`` requests to ``ROUTE``, again (at most ``rounds`` times in all) until every
    one of ``server.worker_pids`` answered some; return how many were sent and who served."""
    served: Counter[int] = Counter()
    sent = 0
    for _ in range(rounds):
        served += send_requests(server, BLOCKING_ROUTE, n)
        sent += n
        if server.worker_pids <= set(served):
            break
    assert sum(served.values()) == sent
    assert set(served) == server.worker_pids, (served, server.worker_pids)
    return sent, served


def test_two_gunicorn_workers_sum_exactly_in_every_scrape(
    start_gunicorn: StartGunicorn, tmp_path: Path
) -> None:
    mp_dir = tmp_path / "mp"
    server = start_gunicorn(mp_dir)
    assert len(server.worker_pids) == 2
    # Both are workers forked by this master, and the run they share is the master's.
    assert {parent_pid(pid) for pid in server.worker_pids} == {server.proc.pid}
    assert (mp_dir / ".app_metrics_run").read_text().startswith(f"{server.proc.pid}:")

    sent, _ = send_to_every_worker(server, N)
    wait_for_total(server, "http_requests_total", sent, endpoint=ROUTE)
    for pid in server.worker_pids:
        assert (mp_dir / f"counter_{pid}.db").exists(), sorted(p.name for p in mp_dir.iterdir())

    assert_every_scrape_sums_to(server, sent, min_scrapes=6)


@pytest.mark.parametrize("marker", [False, True], ids=["stale-files", "stale-run-marker"])
def test_stale_counts_of_a_previous_run_are_removed_when_gunicorn_starts(
    start_gunicorn: StartGunicorn, tmp_path: Path, marker: bool
) -> None:
    mp_dir = tmp_path / "mp"
    write_stale_counter(mp_dir, marker)

    assert_started_fresh(start_gunicorn(mp_dir), mp_dir)


@pytest.mark.parametrize(
    ("workers", "args"), [(2, ()), (1, ("--preload",))], ids=["fork", "preload"]
)
def test_a_new_gunicorn_master_starts_from_zero(
    start_gunicorn: StartGunicorn, tmp_path: Path, workers: int, args: tuple[str, ...]
) -> None:
    """Stop gunicorn and start it again on the same directory: a new master, a new run.
    With --preload the app is imported (and the directory prepared) in the master."""
    assert_restart_starts_from_zero(lambda: start_gunicorn(tmp_path / "mp", workers, args))


def test_gunicorn_restarts_a_sigkilled_worker_and_its_counts_stay(
    start_gunicorn: StartGunicorn, tmp_path: Path
) -> None:
    mp_dir = tmp_path / "mp"
    server = start_gunicorn(mp_dir)
    master = server.proc.pid
    run = (mp_dir / ".app_metrics_run").read_text()
    sent, served = send_to_every_worker(server, N)
    history: list[Scrape] = []  # every scrape from here on, in order
    settled = wait_for_total(server, "http_requests_total", sent, history, endpoint=ROUTE)
    assert settled.total("http_requests_total", endpoint=ROUTE) == sent
    before_kill = sent

    victim = kill_a_worker_mid_request(server, served, history)
    # Until the master has forked a new worker, the survivor answers.
    replacement, sent, answered = wait_for_replacement(server, sent, history)
    assert victim not in answered

    # The same master forked the replacement, in the same run: the victim's counts were
    # kept, folded by the replacement into the run's merged file.
    assert server.proc.poll() is None
    assert parent_pid(replacement) == master
    assert (mp_dir / ".app_metrics_run").read_text() == run
    assert not (mp_dir / f"counter_{victim}.db").exists()
    assert (mp_dir / "counter_merged.db").exists()

    # The dead worker's counts never dropped out: every scrape had the series, and the
    # sum never went backwards nor below what was counted before the kill.
    assert all(has_route(s) for s in history), [s.text[:300] for s in history if not has_route(s)]
    totals = [s.total("http_requests_total", endpoint=ROUTE) for s in history]
    assert totals == sorted(totals), totals
    assert min(totals) >= before_kill, totals

    assert_replacement_completes_the_counts(server, victim, replacement, sent)


@pytest.mark.parametrize(
    ("workers", "args"), [(2, ()), (1, ("--preload",))], ids=["fork", "preload"]
)
def test_the_workers_share_the_metrics_listener_and_each_serves_the_sum(
    start_gunicorn: StartGunicorn, tmp_path: Path, workers: int, args: tuple[str, ...]
) -> None:
    """Each worker binds the listener's port when its lifespan starts (with --preload the
    master imported the app, but runs no lifespan, so never binds it; one worker, as above:
    the app's pid header would name the master)."""
    port = free_port()
    env = {"TEST_APP_METRICS_PORT": str(port)}
    server = start_gunicorn(tmp_path / "mp", workers, args, env)
    sent, _ = send_to_every_worker(server, N)

    def listener_total() -> float:
        response = httpx.get(f"http://{HOST}:{port}/metrics", timeout=10)
        assert response.status_code == 200, response.text[:300]
        return Scrape(parse(response.text), 0, response.text).total(
            "http_requests_total", endpoint=ROUTE
        )

    deadline = time.monotonic() + 10
    for _ in range(200):  # a worker counts just after its response (bounded poll)
        if listener_total() == sent or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert [listener_total() for _ in range(10)] == [sent] * 10
