"""stage and prod never fall back to the native runtime unasked (finding 1 of issue 14)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stack import ROOT
from stack.packages import docker_engine_error


@pytest.mark.parametrize("env", ["stage", "prod"])
def test_auto_without_docker_refuses_the_native_runtime_for(
    env: str, tmp_path: Path, attack
) -> None:
    if docker_engine_error() is None:
        pytest.skip("a Docker engine answers here: auto picks Compose")
    a = attack(f"make up ENV={env} without Docker, RUNTIME=auto",
               "refused before anything starts; RUNTIME=native or compose named")  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "stack", "up", "--env", env, "--runtime", "auto"], cwd=ROOT,
        env={**os.environ, "STACK_RUN_ROOT": str(tmp_path)}, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    a.happened = f"exit {done.returncode}: {done.stderr.strip()[:120]}"
    assert done.returncode == 2
    assert f"ENV={env} will not fall back to the native runtime" in done.stderr
    assert "RUNTIME=compose" in done.stderr and "RUNTIME=native" in done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written, nothing started
    a.blocked = True
