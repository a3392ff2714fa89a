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
_DB_FILE = re.compile(r"_(\d+)\.db$")


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
    master) belongs to its parent's run; a single process is a run of its own.
    """
    pid = os.getppid() if _is_worker() else os.getpid()
    return f"{pid}:{_start_ticks(pid)}"


def _is_worker() -> bool:
    if multiprocessing.parent_process() is not None:
        return True  # uvicorn --workers (and --reload) spawn their servers this way
    # A gunicorn worker's parent is the master ("gunicorn: master [...]" when
    # setproctitle renames it); the master itself, which imports the app under
    # --preload, has a shell or a service manager as its parent.
    return "gunicorn.arbiter" in sys.modules and b"gunicorn" in _cmdline(os.getppid())


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _start_ticks(pid: int) -> str:
    """The process's start time in clock ticks since boot ("?" when unknown)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def _started_at(pid: int) -> float:
    """The process's start time as a Unix time (0 when unknown)."""
    try:
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        return boot + int(_start_ticks(pid)) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, StopIteration):
        return 0.0


def gunicorn_child_exit(server: Any, worker: Any) -> None:
    """gunicorn ``child_exit`` hook: drop the live gauges of a worker that exited.

    Needed with ``--preload`` (workers then never run ``instrument()``); harmless otherwise.
    """
    path = directory()
    if path:
        mark_process_dead(worker.pid, path)


def prepare(path: str) -> None:
    """Create the directory and remove what belongs to no live process of this run.

    Only files of processes that are gone are ever removed (a file of a live process
    is never touched, so a wrong guess about the run costs tidiness, not counts):
    on a new run all of them, within a run only their live gauges.
    """
    os.makedirs(path, exist_ok=True)
    run = _run_id()
    with open(os.path.join(path, _LOCK), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = os.path.join(path, _MARKER)
        try:
            with open(marker) as f:
                new_run = f.read().strip() != run
        except FileNotFoundError:
            new_run = True
        for name in _stale_files(path):
            if new_run or name.startswith("gauge_live"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(path, name))
        if new_run:
            with open(marker, "w") as f:
                f.write(run + "\n")
    atexit.register(mark_process_dead, os.getpid(), path)


def _stale_files(path: str) -> list[str]:
    """Files of processes that are gone: a dead pid, or this pid before this process
    existed (pid reuse, a container's pid 1 restarted)."""
    me, born = os.getpid(), _started_at(os.getpid())
    stale = []
    for name in os.listdir(path):
        m = _DB_FILE.search(name)
        if m is None:
            continue
        pid = int(m.group(1))
        if pid == me:
            with contextlib.suppress(FileNotFoundError):
                if os.path.getmtime(os.path.join(path, name)) < born - 1:
                    stale.append(name)
        elif not _alive(pid):
            stale.append(name)
    return stale


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
