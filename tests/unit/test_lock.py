"""requirements/dev.lock is what `make lock` writes from the environment the tests run in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

LOCK = Path(__file__).resolve().parents[2] / "requirements" / "dev.lock"


def normalised(line: str) -> str:
    name, _, version = line.partition("==")
    return f"{name.lower().replace('_', '-')}=={version}"


def test_the_lock_matches_the_installed_environment() -> None:
    freeze = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    installed = sorted(
        normalised(line) for line in freeze.splitlines()
        if line and not line.startswith(("app-metrics", "app_metrics", "#"))
    )  # fmt: skip
    locked = [line for line in LOCK.read_text().splitlines() if line and not line.startswith("#")]
    assert locked == sorted(locked), "dev.lock is not sorted: run make lock"
    assert locked == installed, "dev.lock and the environment differ: run make lock"
