"""Issue 14, findings 1 and 7, seen on the running stack rather than in its files: every
component's main process (host PID, read from /proc) runs as a user other than root, with no
effective capability; in Compose each container also has a read-only root file system, a pids
limit and no way to gain privileges (NoNewPrivs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .runtimes import Stack

pytestmark = pytest.mark.integration


def process_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def lacks(container: dict, no_new_privs: str) -> list[str]:
    """What the running container lacks of the hardening compose.yaml gives every service."""
    host = container["HostConfig"]
    return [
        *([] if host["ReadonlyRootfs"] else ["a read-only root"]),
        *([] if (host.get("PidsLimit") or 0) > 0 else ["a pids limit"]),
        *([] if no_new_privs == "1" else ["no-new-privileges (NoNewPrivs)"]),
    ]


def test_every_component_runs_unprivileged(stack: Stack) -> None:
    processes = stack.main_processes()
    assert len(processes) >= 8, processes  # the dev stack's components, each seen
    found = {}
    for name, pid in processes.items():
        status = process_status(pid)
        found[name] = (status["Uid"].split(), status["CapEff"], status["NoNewPrivs"])
    root = {name: uids for name, (uids, _, _) in found.items() if "0" in uids}
    capable = {name: caps for name, (_, caps, _) in found.items() if int(caps, 16) != 0}
    assert root == {}, f"running as root (real, effective, saved, fs uid): {root}"
    assert capable == {}, f"with effective capabilities: {capable}"
    containers = stack.containers()
    if not containers:
        return  # natively: processes, no containers
    assert set(containers) == set(processes)
    weak = {name: lacks(c, found[name][2]) for name, c in containers.items()}
    assert {name: what for name, what in weak.items() if what} == {}
