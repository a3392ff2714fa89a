"""Multiple workers: counts from every worker add up through prometheus_client's mmap files.

``PROMETHEUS_MULTIPROC_DIR`` must be set before prometheus_client is imported
(it picks its value class at import). The directory is prepared once per server
run: the first worker of a run (a run is the parent process that spawned the
workers, uvicorn's supervisor or gunicorn's master, or a single server process
itself) removes the files of the previous run; later workers, and workers
restarted after a crash, keep the counts of their dead siblings, so summed
counters never go backwards. Each worker that starts (and gunicorn's master, when
a worker exits) folds the files of the run's dead workers into one file per kind,
so they never pile up (``mpfiles``: which files are touched, and how).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import multiprocessing
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from . import mpfiles
from .mpwriter import MultiprocessWriter

ENV = "PROMETHEUS_MULTIPROC_DIR"


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
    return "gunicorn.arbiter" in sys.modules and _is_gunicorn(_cmdline(os.getppid()))


def _is_gunicorn(cmdline: bytes) -> bool:
    """``gunicorn ...``, ``python -m gunicorn ...``, or setproctitle's ``gunicorn: master``
    (not any command that merely mentions it, such as ``pytest test_gunicorn.py``)."""
    program = cmdline.split(b"\0")[:3]
    return any(os.path.basename(arg) == b"gunicorn" for arg in program) or (
        bool(program) and program[0].startswith(b"gunicorn:")
    )


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
    """gunicorn ``child_exit`` hook: drop the live gauges of a worker that exited and fold
    its files at once.

    Needed with ``--preload`` (workers then never run ``instrument()``); harmless otherwise.
    """
    path = directory()
    if path:
        mark_process_dead(worker.pid, path)
        with _locked(path, fcntl.LOCK_EX):
            mpfiles.recover(path)
            _fold(path, _stale_files(path))


@contextlib.contextmanager
def _locked(path: str, how: int) -> Iterator[None]:
    """The directory's lock, exclusive (preparing, folding) or shared (reading)."""
    flags = os.O_RDWR | os.O_CREAT
    descriptor = mpfiles.open_nofollow(os.path.join(path, mpfiles.LOCK), flags)
    try:
        fcntl.flock(descriptor, how)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def prepare(path: str) -> None:
    """Create the directory and remove or fold what belongs to no live process.

    Only files of processes that are gone are ever removed or folded (a file of a live
    process is never touched, so a wrong guess about the run costs tidiness, not counts):
    on a new run all of them, with the merged counts of the previous run; within a run
    they are folded (``mpfiles.fold``).
    """
    os.makedirs(path, exist_ok=True)
    run = _run_id()
    with _locked(path, fcntl.LOCK_EX):
        mpfiles.recover(path)
        marker = os.path.join(path, mpfiles.MARKER)
        stale = _stale_files(path)
        if (mpfiles.read_text(marker) or "").strip() != run:
            for name, _, _ in stale:
                mpfiles.remove(path, name)
            for kind in mpfiles.FOLDED_KINDS:
                mpfiles.remove(path, mpfiles.merged_name(kind))
            mpfiles.write_text(marker, run + "\n")
        else:
            _fold(path, stale)
    atexit.register(mark_process_dead, os.getpid(), path)


def _fold(path: str, stale: list[tuple[str, str, int]]) -> None:
    """Fold the files of dead processes. A file of this pid left by a process that had it
    before (pid reuse) may be open in this one already: it goes on with its counts, and
    only its live gauges go."""
    me = os.getpid()
    mpfiles.fold(path, [(name, kind) for name, kind, pid in stale if pid != me])
    for name, kind, pid in stale:
        if pid == me and kind.startswith("gauge_live"):
            mpfiles.remove(path, name)


def _stale_files(path: str) -> list[tuple[str, str, int]]:
    """Files of processes that are gone: a dead pid, or this pid before this process
    existed (pid reuse, a container's pid 1 restarted)."""
    me, born = os.getpid(), _started_at(os.getpid())
    stale = []
    for name, kind, pid in mpfiles.process_files(path):
        if pid == me:
            with contextlib.suppress(FileNotFoundError):
                if os.path.getmtime(os.path.join(path, name)) < born - 1:
                    stale.append((name, kind, pid))
        elif not _alive(pid):
            stale.append((name, kind, pid))
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
    """Every worker's files and the merged ones, read without tripping over a worker that
    is creating one, never during a fold (a shared lock), never through a link.

    prometheus_client creates a file empty and sizes it a moment later; a file can
    also vanish between listing and reading (a new run's cleanup). Empty files are
    skipped, and a vanished one makes the read start over once.
    """

    def collect(self) -> Any:
        with _locked(self._path, fcntl.LOCK_SH):
            for attempt in (1, 2):
                files = mpfiles.readable_files(self._path)
                try:
                    return self.merge(files, accumulate=True)
                except FileNotFoundError:
                    if attempt == 2:
                        raise
        return None  # pragma: no cover


class Merged:
    """The collectors one worker serves in multiprocess mode: every worker's files,
    plus this process's scrape-time collectors (which prometheus_client would drop).

    ``text`` writes the files' families as ``files`` would give them, faster (``mpwriter``).
    """

    def __init__(self, path: str, local: Iterable[Any]) -> None:
        self.files = _WorkerFiles(None, path)
        self._local = list(local)
        self._path = path
        self._writer = MultiprocessWriter()

    def collectors(self) -> list[Any]:
        return [self.files, *self._local]

    def text(self, openmetrics: bool) -> str:
        with _locked(self._path, fcntl.LOCK_SH):
            for attempt in (1, 2):
                try:
                    return self._writer.write(mpfiles.readable_files(self._path), openmetrics)
                except FileNotFoundError:
                    if attempt == 2:
                        raise
        return ""  # pragma: no cover
