"""What only the native runtime promises: `make up` twice changes nothing, a port in use or
a process dying at start stops `make up` with the reason, data outlives `make down`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from stack import ROOT
from stack.processes import free_ports

from .conftest import query, until
from .runtimes import NativeStack, Stack

pytestmark = pytest.mark.integration


@pytest.fixture
def native(stack: Stack) -> NativeStack:
    if not isinstance(stack, NativeStack):
        pytest.skip("the Compose runtime runs these checks through Compose itself")
    return stack


def test_a_stack_that_fails_to_start_leaves_no_run_root() -> None:
    before = set(Path(tempfile.gettempdir()).glob("stack-it-*"))
    with pytest.raises(RuntimeError, match="stack up failed"):
        NativeStack(api_replicas=0)  # API_REPLICAS 1..9: refused before anything starts
    assert set(Path(tempfile.gettempdir()).glob("stack-it-*")) == before


def run_up(environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stack", "up", "--env", "dev", "--runtime", "native"],
        cwd=ROOT, env=environ, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def pids(root: Path) -> dict[str, int]:
    state = json.loads((root / "native-state.json").read_text())
    return {name: entry["pid"] for name, entry in state["components"].items()}


def test_a_second_up_changes_nothing(native: NativeStack) -> None:
    before = pids(native.root)
    done = run_up(native.environ)
    assert done.returncode == 0, done.stderr
    assert "already runs natively: nothing changed" in done.stdout
    assert pids(native.root) == before


def test_a_port_in_use_fails_with_the_port_and_its_holder(
    native: NativeStack, tmp_path: Path
) -> None:
    other = native.environ | {"STACK_RUN_ROOT": str(tmp_path)}  # same ports, another stack
    done = run_up(other)
    port = native.ports["postgres"]
    assert done.returncode != 0
    assert f"port {port} (postgres) is in use by pid" in done.stderr
    assert "choose another port with POSTGRES_PORT=<port>" in done.stderr
    assert not (tmp_path / "native-state.json").exists() or not pids(tmp_path)


def test_a_process_dying_at_start_fails_up_with_its_log(native: NativeStack) -> None:
    root = Path(tempfile.mkdtemp(prefix="stack-dying-"))  # /tmp: PostgreSQL's user gets through
    root.chmod(0o755)
    fake = root / "bin"  # where the components' user (pa-monitoring, as root) may run it
    fake.mkdir()
    exporter = fake / "prometheus-node-exporter"
    exporter.write_text("#!/bin/sh\necho 'collector failed: no such device' >&2\nexit 3\n")
    exporter.chmod(0o755)
    # ports of its own (not the running stack's + 1: bind(0) hands out even ports, and the odd
    # ones beside them are what outgoing connections use)
    names = [k for k in native.environ if k.endswith("_PORT")]
    free = dict(zip(names, map(str, free_ports(len(names))), strict=True))
    environ = native.environ | free | {
        "STACK_RUN_ROOT": str(root), "PATH": f"{fake}:{os.environ['PATH']}",
    }  # fmt: skip
    done = run_up(environ)
    assert done.returncode != 0
    assert "node-exporter exited at start; its log ends:" in done.stderr
    assert "collector failed: no such device" in done.stderr
    try:
        assert pids(root) == {}  # what this run had started is stopped again
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_data_survives_down_and_up(native: NativeStack) -> None:
    expr = 'count_over_time(up{job="node"}[1m])'
    until(lambda: query(native, expr), 30, 1, "node samples")
    moment = str(time.time())
    [before] = query(native, expr, time=moment)
    users = query(native, "registered_users")
    native._run("down")
    assert not (native.root / "native-state.json").exists()
    native._run("up")
    [after] = until(lambda: query(native, expr, time=moment), 30, 1, "samples back")
    assert after["value"][1] == before["value"][1]
    again = until(lambda: query(native, "registered_users"), 30, 1, "registered_users")
    assert float(again[0]["value"][1]) >= float(users[0]["value"][1])  # PostgreSQL kept them
