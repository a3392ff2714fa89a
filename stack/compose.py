"""The stack through Docker Compose v2: ``make up|down|status|logs ENV=...``."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from . import ROOT
from .lint import (
    ALERTMANAGER_CHECK,
    PROMETHEUS_CHECK,
    compose_file_args,
    compose_variables,
    config_check,
)
from .render import drift
from .secrets import dotenv_path, prepare, resolve, run_root
from .settings import StackError, check_environment

WAIT_TIMEOUT_SECONDS = 300


def engine_error() -> str | None:
    """None when a Docker engine answers (a ping through the client), else why not."""
    try:
        done = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except FileNotFoundError:
        return "the docker client is not installed"
    except subprocess.TimeoutExpired:
        return "the Docker engine did not answer within 15 s"
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or ["docker version failed"])[-1]
    return None


def compose_command() -> list[str]:
    done = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if done.returncode != 0:
        raise StackError("`docker compose` (Compose v2) is not installed")
    return ["docker", "compose"]


def preflight(env: str, *, root: Path = ROOT, say=print) -> Path:
    """Everything `make up` checks before it starts anything; returns .run/<env>."""
    check_environment(env)
    stale = drift(root)
    if stale:
        names = ", ".join(str(p.relative_to(root)) for p in stale)
        raise StackError(f"generated files are out of date ({names}): run `make generate`")
    runs = run_root() if root == ROOT else root / ".run"
    run_dir = prepare(env, resolve(env, dotenv_path()), runs / env, root)
    say(f"secrets and alertmanager.yml for {env}: {run_dir}/")
    with tempfile.TemporaryDirectory(prefix="stack-preflight-") as tmp:
        secrets_dir = run_dir / "secrets"
        prometheus = root / "prometheus" / "generated" / f"prometheus.{env}.yml"
        alertmanager = run_dir / "alertmanager.yml"
        for name, source, command in (
            ("prometheus", prometheus, PROMETHEUS_CHECK),
            ("alertmanager", alertmanager, ALERTMANAGER_CHECK),
        ):
            copy = Path(tmp) / f"{name}.yml"
            out = config_check(root, command, copy, source.read_text(), secrets_dir)
            if out:
                raise StackError(f"{name} configuration for {env} is invalid:\n{out}")
            say(f"{name} configuration for {env}: valid ({command[0]})")
    return run_dir


def _compose(env: str, run_dir: Path, *args: str) -> int:
    command = [*compose_command(), *compose_file_args(env), *args]
    environ = {**os.environ, **compose_variables(env, run_dir)}
    return subprocess.run(command, cwd=ROOT, env=environ, check=False).returncode


def _require_engine() -> None:
    reason = engine_error()
    if reason:
        raise StackError(
            f"no Docker engine answers ({reason}). Start one, or run the stack natively "
            "(not built yet: see the README)."
        )


def up(env: str) -> int:
    run_dir = preflight(env)
    _require_engine()
    print(f"starting the {env} stack with Docker Compose (waits until healthy)", flush=True)
    return _compose(
        env, run_dir, "up", "--detach", "--build", "--wait",
        "--wait-timeout", str(WAIT_TIMEOUT_SECONDS),
    )  # fmt: skip


def down(env: str) -> int:
    _require_engine()
    return _compose(env, run_root() / check_environment(env), "down")


def status(env: str) -> int:
    _require_engine()
    return _compose(env, run_root() / check_environment(env), "ps", "--all")


def logs(env: str) -> int:
    _require_engine()
    return _compose(env, run_root() / check_environment(env), "logs", "--tail", "200")


def clean(env: str) -> int:
    """Stop the stack and remove its volumes (the data)."""
    _require_engine()
    return _compose(env, run_root() / check_environment(env), "down", "--volumes")
