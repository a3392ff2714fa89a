"""Fixtures that run real uvicorn processes on 127.0.0.1 and scrape their ``/metrics``.

Every server is started in its own session (process group) and stopped in teardown by
signalling that group: SIGTERM, a bounded wait, then SIGKILL. Its output goes to a log
file in the test's tmp_path; failure messages show its tail.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from stack.processes import free_port

REPO = Path(__file__).resolve().parents[2]
APP = "tests.server.app:app"
HOST = "127.0.0.1"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
PID_HEADER = "x-worker-pid"


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    mp_dir: Path | None
    worker_pids: set[int] = field(default_factory=set)
    _client: httpx.Client | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "<no log>"

    @property
    def client(self) -> httpx.Client:
        """A shared client that opens a new connection per request, so any worker may answer
        (a new client per request would cost ~40 ms: httpx loads its CA bundle)."""
        if self._client is None:
            self._client = httpx.Client(
                base_url=self.url,
                timeout=10.0,
                follow_redirects=False,
                limits=httpx.Limits(max_keepalive_connections=0),
            )
        return self._client

    def get(self, path: str) -> httpx.Response:
        return self.client.get(path)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def stop_process_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the group led by ``proc``, wait (bounded), then SIGKILL whatever is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=STOP_TIMEOUT)
    # Also reaches workers that outlived their supervisor: they stay in its group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=STOP_TIMEOUT)


def _wait_ready(server: Server, workers: int, name: str) -> None:
    """Poll ``/metrics`` on new connections until ``workers`` distinct pids answered."""
    deadline = time.monotonic() + START_TIMEOUT
    for _ in range(2000):
        if time.monotonic() > deadline:
            break
        if server.proc.poll() is not None:
            pytest.fail(f"{name} exited with {server.proc.returncode}:\n{server.log_tail()}")
        try:
            response = server.get("/metrics")
        except httpx.TransportError:
            time.sleep(0.03)
            continue
        if response.status_code == 200:
            server.worker_pids.add(int(response.headers[PID_HEADER]))
            if len(server.worker_pids) >= workers:
                return
        time.sleep(0.02)  # see scrape_every_worker
    pytest.fail(
        f"{name} not ready in {START_TIMEOUT}s ({len(server.worker_pids)}/{workers} workers"
        f" answered /metrics):\n{server.log_tail()}"
    )


@contextlib.contextmanager
def running_servers() -> Iterator[list[Server]]:
    """The list a fixture appends each started ``Server`` to; on leaving, whatever the
    outcome, each is stopped (its process group, then its client closed), last first."""
    started: list[Server] = []
    try:
        yield started
    finally:
        for server in reversed(started):
            stop_process_group(server.proc)
            server.close()


def launch(
    name: str,
    command: Callable[[int], list[str]],
    log_dir: Path,
    workers: int,
    mp_dir: Path | None = None,
    env: dict[str, str] | None = None,
    drop_env: Sequence[str] = (),
) -> Server:
    """Start ``command(port)`` on a free port in its own session and wait until ``workers``
    pids answered ``/metrics``; a server that does not get ready is stopped before failing."""
    port = free_port()
    child_env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in ("prometheus_multiproc_dir", "test_app_root_path") and k not in drop_env
    }
    if mp_dir is not None:
        mp_dir.mkdir(parents=True, exist_ok=True)
        child_env["PROMETHEUS_MULTIPROC_DIR"] = str(mp_dir)
    child_env.update(env or {})
    log_path = log_dir / f"{name}-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command(port),
            cwd=REPO,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(proc, port, log_path, mp_dir)
    try:
        _wait_ready(server, workers, name)
    except BaseException:
        stop_process_group(proc)
        server.close()
        raise
    return server


StartServer = Callable[..., Server]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """``start_server(workers=1, mp_dir=None, args=(), env=None)`` -> a ready ``Server``.

    Readiness: every worker answered ``/metrics`` (not counted in the HTTP metrics).
    Every process started here is stopped at teardown, whatever the test's outcome.
    """

    def start(
        workers: int = 1,
        mp_dir: Path | None = None,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> Server:
        def command(port: int) -> list[str]:
            return [
                sys.executable, "-m", "uvicorn", APP,
                "--host", HOST, "--port", str(port),
                "--app-dir", str(REPO),
                "--log-level", "info", "--no-access-log",
                *(["--workers", str(workers)] if workers > 1 else []),
                *args,
            ]  # fmt: skip

        server = launch("uvicorn", command, tmp_path, workers, mp_dir, env)
        started.append(server)
        return server

    with running_servers() as started:
        yield start


def send_requests(server: Server, path: str, n: int, threads: int = 4) -> Counter[int]:
    """``n`` GETs of ``path``, each on a new connection, from ``threads`` clients at once.

    Every response must be a 200; returns how many each worker pid answered.
    """

    def run(count: int) -> Counter[int]:
        served: Counter[int] = Counter()
        for _ in range(count):
            response = server.get(path)
            assert response.status_code == 200, (response.status_code, response.text)
            served[int(response.headers[PID_HEADER])] += 1
        return served

    shares = [n // threads + (i < n % threads) for i in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(run, shares), Counter())


# --- scraping ---------------------------------------------------------------------------


@dataclass
class Scrape:
    samples: list[Sample]
    worker_pid: int
    text: str

    def select(self, name: str, **labels: str) -> list[Sample]:
        """Samples called ``name`` whose labels include ``labels``."""
        return [
            s
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def total(self, name: str, **labels: str) -> float:
        return sum(s.value for s in self.select(name, **labels))


def parse(text: str) -> list[Sample]:
    """Every sample of a text exposition."""
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def scrape(server: Server, path: str = "/metrics") -> Scrape:
    """GET ``path`` on a new connection and parse the text exposition."""
    response = server.get(path)
    assert response.status_code == 200, (response.status_code, response.text[:500])
    return Scrape(parse(response.text), int(response.headers[PID_HEADER]), response.text)


def scrape_every_worker(
    server: Server, check: Callable[[Scrape], None] | None = None, min_scrapes: int = 5
) -> list[Scrape]:
    """Scrape on new connections until each of ``server.worker_pids`` answered at least once
    (at least ``min_scrapes``, at most 60 scrapes or 15 s); ``check`` runs on every scrape."""
    scrapes: list[Scrape] = []
    deadline = time.monotonic() + 15.0
    for i in range(60):
        scrapes.append(scrape(server))
        if check is not None:
            check(scrapes[-1])
        answered = {x.worker_pid for x in scrapes}
        if len(scrapes) >= min_scrapes and server.worker_pids <= answered:
            break
        if time.monotonic() > deadline:
            break
        # Back-to-back connections tend to go to the worker that just answered; a pause,
        # with both workers idle, makes the kernel's choice a fair race.
        time.sleep(0.02 if i < 10 else 0.05)
    answered = {x.worker_pid for x in scrapes}
    assert server.worker_pids <= answered, (
        f"workers {server.worker_pids} (alive: {alive(server.worker_pids)}), {len(scrapes)}"
        f" scrapes answered by {answered}:\n{server.log_tail()}"
    )
    return scrapes


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` that are still running (signal 0 probes without signalling)."""
    out = set()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 0)
            out.add(pid)
    return out


def poll_scrape(
    server: Server,
    until: Callable[[Scrape], bool],
    timeout: float = 5.0,
    history: list[Scrape] | None = None,
) -> Scrape:
    """Scrape until ``until(scrape)`` holds (bounded); return the last scrape either way.

    Every scrape taken is appended to ``history`` when one is given.
    """
    deadline = time.monotonic() + timeout
    for _ in range(500):
        last = scrape(server)
        if history is not None:
            history.append(last)
        if until(last) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    return last


def wait_for_total(
    server: Server,
    name: str,
    expected: float,
    history: list[Scrape] | None = None,
    **labels: str,
) -> Scrape:
    """Poll until the sum of ``name`` reaches ``expected``; return that scrape.

    A worker records a request just after it has sent the response's last byte, so with
    several workers another one can answer a scrape in between: the client has its
    response, the count lands a moment later.
    """
    return poll_scrape(server, lambda s: s.total(name, **labels) >= expected, history=history)


# --- raw sockets (a client that misbehaves) ----------------------------------------------


def raw_request(server: Server, path: str) -> socket.socket:
    """Open a connection and send ``GET path``; the caller reads and closes."""
    sock = socket.create_connection((HOST, server.port), timeout=5.0)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
    return sock


def read_until(sock: socket.socket, marker: bytes, limit: int = 1 << 16) -> bytes:
    """Read until ``marker`` arrived (bounded by ``limit`` bytes and the socket timeout)."""
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        if not chunk or len(data) > limit:
            raise AssertionError(f"connection ended before {marker!r}: {data[:500]!r}")
        data += chunk
    return data


def header(head: bytes, name: str) -> str:
    """A header's value from a raw response head."""
    for line in head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name.encode():
            return value.strip().decode()
    raise AssertionError(f"no {name} header in {head[:500]!r}")
