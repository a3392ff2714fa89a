"""Fixtures for the stack's tests: a throwaway copy of the configuration tree, and real
processes (Alertmanager, the webhook receiver) on free ports of 127.0.0.1, stopped by PID."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack import ROOT

COPIED = ["compose", "prometheus", "alertmanager", "grafana", "exporters", "receiver",
          "runbooks", "docs", ".yamllint.yaml", "README.md"]  # fmt: skip
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """The stack's configuration files, copied: a test may break them."""
    root = tmp_path / "repo"
    root.mkdir()
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, root / name)
    return root


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


class Process:
    """A child process in its own session, its output in a log file; stop() by PID."""

    def __init__(self, argv: list[str], log: Path, ready_url: str) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers(ready_url):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"{argv[0]} did not start: {self.tail()}", pytrace=False)
            time.sleep(0.05)

    @staticmethod
    def _answers(url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(STOP_TIMEOUT)


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    """Append started processes; every one is stopped at the end of the test."""
    started: list[Process] = []
    yield started
    for process in reversed(started):
        process.stop()
