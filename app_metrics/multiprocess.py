"""Multiple workers: counts from every worker add up through prometheus_client's mmap files.

``PROMETHEUS_MULTIPROC_DIR`` must be set before prometheus_client is imported
(it picks its value class at import). The directory is prepared once per server
run: the first worker of a run (a run is the parent process that spawned the
workers, uvicorn's supervisor or gunicorn's master, or a single server process
itself) removes the files of the previous run; later workers, and workers
restarted after a crash, keep the counts of their dead siblings, so summed
counters never go backwards.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import glob
import multiprocessing
import os
import re
import sys
from collections.abc import Iterable
from typing import Any

from prometheus_client import values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

ENV = "PROMETHEUS_MULTIPROC_DIR"
_MARKER = ".app_metrics_run"
_LOCK = ".app_metrics_lock"
_LIVE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db$")


def directory() -> str | None:
    """The multiprocess directory from the environment, or None in single-process mode."""
    return os.environ.get(ENV) or None


def check_value_class(path: str) -> None:
    """Fail loudly when the env var was set after prometheus_client was imported."""
    if values.ValueClass is values.MutexValue:
        raise RuntimeError(
            f"{ENV}={path} is set, but prometheus_client was imported before it was: "
            "set the variable in the environment of the server process, not in code"
        )


def _run_id() -> str:
    """Who owns the directory's contents: a pid and its start time.

    A worker (uvicorn spawns them with multiprocessing, gunicorn forks them from its
    arbiter) belongs to its parent's run; a single process is a run of its own.
    """
    pid = os.getppid() if _is_worker() else os.getpid()
    try:
        with open(f"/proc/{pid}/stat") as f:
            started = f.read().rsplit(")", 1)[1].split()[19]
    except OSError:
        started = "?"
    return f"{pid}:{started}"


def _is_worker() -> bool:
    if multiprocessing.parent_process() is not None:
        return True  # uvicorn --workers (and --reload) spawn their servers this way
    # A gunicorn worker is forked from the master, so it shares its command line;
    # the master itself (which imports the app with --preload) does not.
    return "gunicorn.arbiter" in sys.modules and _cmdline(os.getppid()) == _cmdline(os.getpid())


def _cmdline(pid: int) -> bytes | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return None


def gunicorn_child_exit(server: Any, worker: Any) -> None:
    """gunicorn ``child_exit`` hook: drop the live gauges of a worker that exited.

    Needed with ``--preload`` (workers then never run ``instrument()``); harmless otherwise.
    """
    path = directory()
    if path:
        mark_process_dead(worker.pid, path)


def prepare(path: str) -> None:
    """Create the directory; on the first worker of a new run, remove the old run's files."""
    os.makedirs(path, exist_ok=True)
    run = _run_id()
    with open(os.path.join(path, _LOCK), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = os.path.join(path, _MARKER)
        try:
            with open(marker) as f:
                previous = f.read().strip()
        except FileNotFoundError:
            previous = ""
        if previous != run:
            for db in glob.glob(os.path.join(path, "*.db")):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(db)
            with open(marker, "w") as f:
                f.write(run + "\n")
        else:
            _forget_dead_workers(path)
    atexit.register(mark_process_dead, os.getpid(), path)


def _forget_dead_workers(path: str) -> None:
    """Drop the live-gauge files of workers that died without running their exit hooks."""
    for name in os.listdir(path):
        m = _LIVE_FILE.search(name)
        if m and not _alive(int(m.group(1))):
            mark_process_dead(int(m.group(1)), path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _WorkerFiles(MultiProcessCollector):
    """Every worker's files, read without tripping over a worker that is creating one.

    prometheus_client creates a file empty and sizes it a moment later; a file can
    also vanish between listing and reading (a new run's cleanup). Empty files are
    skipped, and a vanished one makes the read start over once.
    """

    def collect(self) -> Any:
        for attempt in (1, 2):
            files = []
            for path in glob.glob(os.path.join(self._path, "*.db")):
                with contextlib.suppress(FileNotFoundError):
                    if os.path.getsize(path) >= 8:
                        files.append(path)
            try:
                return self.merge(files, accumulate=True)
            except FileNotFoundError:
                if attempt == 2:
                    raise
        return None  # pragma: no cover


class Merged:
    """The collectors one worker serves in multiprocess mode: every worker's files,
    plus this process's scrape-time collectors (which prometheus_client would drop)."""

    def __init__(self, path: str, local: Iterable[Any]) -> None:
        self._files = _WorkerFiles(None, path)
        self._local = list(local)

    def collectors(self) -> list[Any]:
        return [self._files, *self._local]
