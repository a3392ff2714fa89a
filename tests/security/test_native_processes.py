"""Findings 1 and 8, the native runtime's processes: a local user must not find a component
running as root, a secret in a process's environment or command line, the caller's
environment handed down, or a readable log, secret or run directory.

One throwaway native dev stack (`python -m stack up --runtime native`, its own run root, every
port free, 127.0.0.1), started with a sentinel variable in the caller's environment; every
recorded process and its children are read from /proc. As root (CI, the acceptance check) the
components must run as pa-monitoring (PostgreSQL as postgres); as another user, as that user.
Before: every component but PostgreSQL ran as root, each got the caller's whole environment,
and the API's and the worker's held the database URL with its password; logs were 0644."""

from __future__ import annotations

import json
import os
import pwd
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.native_user import USER
from tests.integration.runtimes import NativeStack

pytestmark = pytest.mark.integration
SENTINEL = "STACK_TEST_SENTINEL"
SENTINEL_VALUE = "caller-only-7f3a9c"


@pytest.fixture(scope="module")
def native() -> Iterator[NativeStack]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SENTINEL, SENTINEL_VALUE)
        running = NativeStack()
    try:
        yield running
    finally:
        running.close()


def processes(native: NativeStack) -> dict[int, str]:
    """Every recorded PID and its descendants -> ``component (comm)``."""
    state = json.loads((native.root / "native-state.json").read_text())
    found = {entry["pid"]: name for name, entry in state["components"].items()}
    parents: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                text = (proc / "stat").read_text()
            except OSError:
                continue
            parents.setdefault(int(text[text.rindex(")") + 2 :].split()[1]), []).append(
                int(proc.name)
            )
    todo = list(found)
    while todo:
        pid = todo.pop()
        for child in parents.get(pid, []):
            if child not in found:
                found[child] = f"{found[pid].split(' (child')[0]} (child {child})"
                todo.append(child)
    return found


def uid_of(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None  # exited since
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


def expected_uid(component: str) -> int:
    """root's stack: pa-monitoring, PostgreSQL (its server processes too) postgres; another
    user's: that user."""
    if os.geteuid() != 0:
        return os.geteuid()
    return pwd.getpwnam("postgres" if component == "postgres" else USER).pw_uid


def test_no_native_component_runs_as_root(native: NativeStack, attack) -> None:
    tried = attack(
        "as a local user: look for a native component running as root",
        f"none: {USER} (PostgreSQL: postgres), or the caller when not root",
    )
    found = {pid: (name, uid_of(pid)) for pid, name in processes(native).items()}
    found = {pid: seen for pid, seen in found.items() if seen[1] is not None}
    users = [pwd.getpwuid(uid).pw_name for _, uid in found.values() if uid is not None]
    counts = ", ".join(f"{user} {users.count(user)}" for user in sorted(set(users)))
    tried.happened = f"{len(found)} processes and children: {counts}"
    assert len(found) >= 11, found
    for pid, (name, uid) in found.items():
        assert uid != 0, f"{name} (pid {pid}) runs as root"
        assert uid == expected_uid(name.split(" (child")[0]), f"{name} (pid {pid}) uid {uid}"
    tried.blocked = True


def test_no_secret_nor_the_callers_environment_reaches_a_process(
    native: NativeStack, attack
) -> None:
    tried = attack(
        "read each native process's environment and command line for secrets",
        "no secret value, no caller variable (a sentinel)",
    )
    secrets_dir = native.root / "dev" / "secrets"
    values = {p.name: p.read_text().strip() for p in secrets_dir.iterdir() if p.is_file()}
    values = {name: value for name, value in values.items() if len(value) >= 8}
    leaks = []
    for pid, name in processes(native).items():
        try:
            seen = (
                Path(f"/proc/{pid}/environ").read_bytes()
                + Path(f"/proc/{pid}/cmdline").read_bytes()
            )
        except OSError:
            continue
        if SENTINEL.encode() in seen or SENTINEL_VALUE.encode() in seen:
            leaks.append(f"{name}: {SENTINEL}")
        leaks += [f"{name}: {secret}" for secret, v in values.items() if v.encode() in seen]
        if b"ASSISTANT_DATABASE_URL=" in seen:
            leaks.append(f"{name}: ASSISTANT_DATABASE_URL")
    tried.happened = "; ".join(leaks) or f"none in {len(processes(native))} processes"
    assert values and not leaks, leaks
    tried.blocked = True


def test_the_logs_secrets_and_run_directory_are_closed_to_others(
    native: NativeStack, attack
) -> None:
    tried = attack(
        "as a local user: read the native logs, secrets, run directory",
        "nothing readable by others (directories 07x0/0711, files 06x0)",
    )
    root = native.root
    readable = []
    for path in [root, *root.rglob("*")]:
        if not path.exists() or path.is_symlink() or "postgres-" in str(path):
            continue  # PostgreSQL's own data and socket: its module's to set
        mode = path.stat().st_mode
        if mode & stat.S_IROTH or (path.is_file() and mode & stat.S_IWOTH):
            readable.append(f"{path.relative_to(root)} {stat.filemode(mode)}")
    logs = sorted((root / "logs" / "dev").glob("*.log"))
    tried.happened = "; ".join(readable[:5]) or f"none; {len(logs)} logs, each 0600"
    assert len(logs) >= 11 and not readable, readable
    assert all(stat.S_IMODE(log.stat().st_mode) == 0o600 for log in logs)
    tried.blocked = True
