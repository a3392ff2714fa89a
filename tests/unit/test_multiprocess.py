"""Preparing the multiprocess directory: only files of processes that are gone are removed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from app_metrics import multiprocess


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=30)
    return proc.pid


def test_a_new_run_removes_files_of_dead_processes_only(tmp_path: Path) -> None:
    gone = dead_pid()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        names = [
            f"counter_{gone}.db",
            f"gauge_livesum_{gone}.db",
            f"counter_{sleeper.pid}.db",  # a live process: never touched
            f"counter_{os.getpid()}.db",  # this process, written after it started
        ]
        for name in names:
            (tmp_path / name).write_bytes(b"\0" * 16)
        (tmp_path / ".app_metrics_run").write_text("some-other-run\n")
        multiprocess.prepare(str(tmp_path))
        left = sorted(p.name for p in tmp_path.glob("*.db"))
        assert left == sorted(names[2:])
    finally:
        sleeper.kill()
        sleeper.wait(timeout=30)


def test_within_a_run_only_live_gauges_of_dead_processes_go(tmp_path: Path) -> None:
    gone = dead_pid()
    for name in (f"counter_{gone}.db", f"histogram_{gone}.db", f"gauge_livesum_{gone}.db"):
        (tmp_path / name).write_bytes(b"\0" * 16)
    multiprocess.prepare(str(tmp_path))  # first call: a new run, all three go
    for name in (f"counter_{gone}.db", f"gauge_livesum_{gone}.db"):
        (tmp_path / name).write_bytes(b"\0" * 16)  # a worker of this run that died
    multiprocess.prepare(str(tmp_path))  # same run: keep its counts, drop its live gauge
    assert sorted(p.name for p in tmp_path.glob("*.db")) == [f"counter_{gone}.db"]


def test_a_file_of_this_pid_older_than_this_process_is_stale(tmp_path: Path) -> None:
    old = tmp_path / f"gauge_livesum_{os.getpid()}.db"  # pid reuse, or pid 1 restarted
    old.write_bytes(b"\0" * 16)
    an_hour_ago = time.time() - 3600 - _age_of_this_process()
    os.utime(old, (an_hour_ago, an_hour_ago))
    multiprocess.prepare(str(tmp_path))
    assert not old.exists()


def _age_of_this_process() -> float:
    return time.time() - multiprocess._started_at(os.getpid())
