"""Finding 8, ``app_metrics.multiprocess``: preparing the directory touches only the files
app_metrics and prometheus_client make there, never through a symbolic link, and dead
workers' files do not pile up under gunicorn ``--max-requests`` while counts never go back.

Each attack plants something in a multiprocess directory, then starts a real process that
instruments an app on it (``PROMETHEUS_MULTIPROC_DIR`` set before prometheus_client is
imported, as a server's workers have it), or a real gunicorn.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from tests.security.conftest import Attack
from tests.server.conftest import (
    APP,
    HOST,
    PID_HEADER,
    Server,
    launch,
    running_servers,
    scrape,
)
from tests.server.test_gunicorn import NO_CONTROL_SOCKET, WORKER_CLASS

pytestmark = pytest.mark.server

REPO = Path(__file__).resolve().parents[2]
AttackFn = Callable[[str, str], Attack]
T = TypeVar("T")
NOBODY = 65534
INSTRUMENT = """
from fastapi import FastAPI
import app_metrics
metrics = app_metrics.instrument(FastAPI())
body, _ = metrics.render("")
print(body.decode())
"""


def instrument(mp_dir: Path) -> subprocess.CompletedProcess[str]:
    """A real process instrumenting an app on ``mp_dir`` and rendering its metrics once."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(mp_dir)}
    return subprocess.run(
        [sys.executable, "-c", INSTRUMENT],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=30)
    return proc.pid


@pytest.fixture
def mp_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "mp"
    directory.mkdir()
    return directory


@pytest.mark.parametrize("name", [".app_metrics_run", ".app_metrics_lock"])
def test_a_planted_link_is_never_followed(
    mp_dir: Path, tmp_path: Path, attack: AttackFn, name: str
) -> None:
    a = attack(f"{name} planted as a symlink to another file", "target untouched, refused")
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    missing = tmp_path / "etc-nologin"  # a file whose mere creation does harm
    (mp_dir / name).symlink_to(victim if name.endswith("run") else missing)
    result = instrument(mp_dir)
    a.happened = (
        f"exit {result.returncode}; victim {victim.read_text()[:12]!r}; "
        f"{missing.name} {'created' if missing.exists() else 'absent'}"
    )
    assert victim.read_text() == "precious\n" and not missing.exists()
    assert result.returncode != 0 and "symbolic link" in result.stderr
    a.blocked = True


def test_only_its_own_file_patterns_are_removed(mp_dir: Path, attack: AttackFn) -> None:
    a = attack("other files named *_<dead pid>.db in the directory", "left alone")
    gone = dead_pid()
    theirs = [f"backup_{gone}.db", f"sqlite_{gone}.db", f"counter_x_{gone}.db"]
    for name in theirs:
        (mp_dir / name).write_bytes(b"\0" * 16)
    foreign = mp_dir / f"counter_{gone}.db"  # prometheus_client's name, another user's file
    foreign.write_bytes(b"\0" * 16)
    os.chown(foreign, NOBODY, NOBODY)
    ours = mp_dir / f"histogram_{gone}.db"  # a previous run's: removed
    ours.write_bytes(b"\0" * 16)
    result = instrument(mp_dir)
    assert result.returncode == 0, result.stderr
    kept = sorted(p.name for p in mp_dir.iterdir() if p.name in [*theirs, foreign.name])
    a.happened = f"{len(kept)} of {len(theirs) + 1} kept"
    assert kept == sorted([*theirs, foreign.name]) and not ours.exists()
    a.blocked = True


def test_a_link_at_a_worker_file_name_is_not_read(
    mp_dir: Path, tmp_path: Path, attack: AttackFn
) -> None:
    a = attack("counter_<pid>.db planted as a symlink", "not read into the scrape")
    elsewhere = tmp_path / "planted.db"
    planted = MmapedDict(str(elsewhere))
    planted.write_value(mmap_key("stolen_total", "stolen_total", [], [], "x"), 42.0, 0.0)
    planted.close()
    (mp_dir / f"counter_{os.getpid()}.db").symlink_to(elsewhere)  # a live pid: kept
    result = instrument(mp_dir)
    assert result.returncode == 0, result.stderr
    a.happened = "read" if "stolen_total" in result.stdout else "not read"
    assert "stolen_total" not in result.stdout
    a.blocked = True


# --- gunicorn --max-requests ---------------------------------------------------------------

MAX_REQUESTS = 10
REQUESTS = 400
# what may be there at any time: each live worker's files (counter, histogram, gauge), as
# many again of workers that died since the last fold, and one merged file per kind
FILE_BOUND = 2 * 3 * 2 + 3


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[Callable[[Path], Server]]:
    config = tmp_path / "gunicorn.conf.py"
    config.write_text("")  # no gunicorn.conf.py of the working directory

    def start(mp: Path) -> Server:
        def command(port: int) -> list[str]:
            return [
                sys.executable, "-m", "gunicorn", "--config", str(config),
                "-w", "2", "-k", WORKER_CLASS, "-b", f"{HOST}:{port}",
                "--max-requests", str(MAX_REQUESTS), "--max-requests-jitter", "0",
                "--graceful-timeout", "5", "--log-level", "warning", *NO_CONTROL_SOCKET, APP,
            ]  # fmt: skip

        server = launch("gunicorn", command, tmp_path, 2, mp, drop_env=("GUNICORN_CMD_ARGS",))
        started.append(server)
        return server

    with running_servers() as started:
        yield start


def retried(call: Callable[[], T]) -> T:
    """A worker that reached --max-requests may close a connection it accepted without
    answering (the request never ran): try again, on a new connection."""
    for _ in range(10):
        try:
            return call()
        except httpx.TransportError:
            time.sleep(0.05)
    return call()


def send(server: Server, n: int) -> set[int]:
    """``n`` GET /pid, each answered 200 (retried as above); the pids that answered."""

    def one(_: int) -> int:
        response = retried(lambda: server.get("/pid"))
        assert response.status_code == 200, response.text
        return int(response.headers[PID_HEADER])

    with ThreadPoolExecutor(2) as pool:
        return set(pool.map(one, range(n)))


def total(server: Server) -> float:
    return retried(lambda: scrape(server)).total("http_requests_total", endpoint="/pid")


def test_dead_workers_files_do_not_pile_up(
    gunicorn: Callable[[Path], Server], tmp_path: Path, attack: AttackFn
) -> None:
    a = attack(
        f"gunicorn --max-requests {MAX_REQUESTS}, {REQUESTS} requests",
        f"at most {FILE_BOUND} files, counts exact and never back",
    )
    mp = tmp_path / "mp"
    server = gunicorn(mp)
    totals: list[float] = []
    with ThreadPoolExecutor(1) as pool:
        traffic = pool.submit(send, server, REQUESTS)
        deadline = time.monotonic() + 120
        while not traffic.done() and time.monotonic() < deadline:
            totals.append(total(server))
            time.sleep(0.05)
        served = traffic.result(timeout=60)
    for _ in range(100):  # a worker counts a request just after its response: settle
        totals.append(total(server))
        if totals[-1] >= REQUESTS:
            break
        time.sleep(0.05)
    files = sorted(p.name for p in mp.iterdir() if p.name.endswith(".db"))
    a.happened = (
        f"{len(served)} workers served, {len(files)} files, last count {totals[-1]:g},"
        f" never back: {totals == sorted(totals)}"
    )
    # workers really came and went: more than two generations of the two workers (how many
    # more depends on how fast the arbiter replaces them on a loaded machine: 8 to 40 seen)
    assert len(served) > 2 * 2
    assert totals == sorted(totals) and totals[-1] == REQUESTS
    assert len(files) <= FILE_BOUND, files
    a.blocked = True
