"""Preparing the multiprocess directory: only files of processes that are gone are removed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict

from app_metrics import mpfiles, multiprocess


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


def write(path: Path, values: dict[str, float]) -> None:
    """A prometheus_client file holding ``values`` (series key -> value)."""
    mapped = MmapedDict(str(path))
    for key, value in values.items():
        mapped.write_value(key, value, 0.0)
    mapped.close()


def added_up(directory: Path) -> dict[str, float]:
    """What a scrape adds up, per series key: every file it reads."""
    totals: dict[str, float] = {}
    for path in mpfiles.readable_files(str(directory)):
        for key, value, _ in mpfiles.entries(path):
            totals[key] = totals.get(key, 0.0) + value
    return totals


def test_within_a_run_dead_workers_are_folded_counts_kept_gauges_dropped(
    tmp_path: Path,
) -> None:
    multiprocess.prepare(str(tmp_path))  # first call: a new run
    for values in ({"a": 3.0, "b": 1.0}, {"a": 2.0}):  # two workers of this run die in turn
        gone = dead_pid()
        write(tmp_path / f"counter_{gone}.db", values)
        write(tmp_path / f"histogram_{gone}.db", {"h": 1.0})
        write(tmp_path / f"gauge_livesum_{gone}.db", {"g": 1.0})
        write(tmp_path / f"gauge_max_{gone}.db", {"m": 7.0})
        multiprocess.prepare(str(tmp_path))  # the replacement starts: same run
    names = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert names == ["counter_merged.db", "histogram_merged.db"]
    assert added_up(tmp_path) == {"a": 5.0, "b": 1.0, "h": 2.0}


@pytest.mark.parametrize("crash_after", range(6))
def test_a_fold_interrupted_anywhere_neither_loses_nor_doubles_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_after: int
) -> None:
    """A fold's steps: rename the journal, counter_merged.db, histogram_merged.db into
    place; remove the two folded files, then the journal. The process dies after any."""
    write(tmp_path / "counter_merged.db", {"a": 10.0})
    gone = dead_pid()
    write(tmp_path / f"counter_{gone}.db", {"a": 1.0, "b": 2.0})
    write(tmp_path / f"histogram_{gone}.db", {"h": 4.0})
    expected = {"a": 11.0, "b": 2.0, "h": 4.0}
    assert added_up(tmp_path) == expected
    steps: list[str] = []

    def dying(real: Callable[..., None]) -> Callable[..., None]:
        def step(*args: str) -> None:
            if len(steps) == crash_after:
                raise KeyboardInterrupt("the process dies here")
            steps.append(args[-1])
            real(*args)

        return step

    with monkeypatch.context() as patched:
        patched.setattr(mpfiles.os, "replace", dying(os.replace))
        patched.setattr(mpfiles.os, "remove", dying(os.remove))
        dead = [(f"counter_{gone}.db", "counter"), (f"histogram_{gone}.db", "histogram")]
        with pytest.raises(KeyboardInterrupt):
            mpfiles.fold(str(tmp_path), dead)
    mpfiles.recover(str(tmp_path))  # the next worker to start
    assert added_up(tmp_path) == expected
    left = [(name, kind) for name, kind, _ in mpfiles.process_files(str(tmp_path))]
    mpfiles.fold(str(tmp_path), left)
    assert added_up(tmp_path) == expected
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".app_metrics_fold")]
    assert not mpfiles.process_files(str(tmp_path))


def test_a_file_of_this_pid_older_than_this_process_is_stale(tmp_path: Path) -> None:
    old = tmp_path / f"gauge_livesum_{os.getpid()}.db"  # pid reuse, or pid 1 restarted
    old.write_bytes(b"\0" * 16)
    an_hour_ago = time.time() - 3600 - _age_of_this_process()
    os.utime(old, (an_hour_ago, an_hour_ago))
    multiprocess.prepare(str(tmp_path))
    assert not old.exists()


def _age_of_this_process() -> float:
    return time.time() - multiprocess._started_at(os.getpid())


@pytest.mark.parametrize(
    ("cmdline", "master"),
    [
        (b"/venv/bin/python\0/venv/bin/gunicorn\0-w\x002\0app:app\0", True),
        (b"python\0-m\0gunicorn\0app:app\0", True),
        (b"gunicorn: master [app:app]\0", True),
        (b"python\0-m\0pytest\0tests/server/test_gunicorn.py\0", False),
        (b"bash\0-c\0gunicorn app:app\0", False),
    ],
)
def test_a_gunicorn_master_is_told_by_its_program_not_by_a_mention(
    cmdline: bytes, master: bool
) -> None:
    assert multiprocess._is_gunicorn(cmdline) is master


def test_gunicorns_child_exit_hook_folds_the_exited_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(multiprocess.ENV, str(tmp_path))
    gone = dead_pid()
    write(tmp_path / f"counter_{gone}.db", {"a": 4.0})
    write(tmp_path / f"gauge_livesum_{gone}.db", {"g": 1.0})

    class Worker:
        pid = gone

    multiprocess.gunicorn_child_exit(None, Worker())
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["counter_merged.db"]
    assert added_up(tmp_path) == {"a": 4.0}
