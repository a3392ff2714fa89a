"""Fixtures for the stack's tests: a throwaway copy of the configuration tree, and real
processes (Alertmanager, the webhook receiver) on free ports of 127.0.0.1, stopped by PID."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from stack import ROOT
from stack.processes import http_ok, launch, stop

# tests/: the metrics catalog lists the test files that mention each metric
COPIED = ["compose", "prometheus", "alertmanager", "grafana", "exporters", "postgres",
          "receiver", "runbooks", "docs", "tests", "victoriametrics", ".yamllint.yaml"]  # fmt: skip
START_TIMEOUT = 15.0


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
    """A child process in its own session, its output in a log file; ``stop()`` by PID (the
    native runtime's own launch and stop, stack/processes.py). ``headers``: what the readiness
    request sends (the monitoring user's Authorization, where the web configuration asks);
    ``env``: its environment (default: ours)."""

    def __init__(
        self,
        argv: list[str],
        log: Path,
        ready_url: str,
        headers: Mapping[str, str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.log = log
        self.running = launch(argv, log, env)
        deadline = time.monotonic() + START_TIMEOUT
        while not http_ok(ready_url, timeout=1, headers=headers):
            if not self.running.alive() or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"{argv[0]} did not start: {self.tail()}", pytrace=False)
            time.sleep(0.05)

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        stop(self.running)


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    """Append started processes; every one is stopped at the end of the test."""
    started: list[Process] = []
    yield started
    for process in reversed(started):
        process.stop()
