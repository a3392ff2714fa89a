"""What each make target needs from the machine, checked before anything else runs:
``python3 -m stack.packages venv|up|test [--runtime auto|native|compose]``.

Make calls it with the machine's Python before ``.venv`` exists, so this module and what it
imports use the standard library only. As root the missing Debian packages are installed
(apt.py); as another user one message names the exact command, and nothing else happens.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import ROOT, apt
from .services import debian_binaries
from .settings import StackError

# Beside the services' own binaries (stack/services.toml): Debian's Compose v1, which merges
# and interpolates the Compose files for the native runtime and checks them in make lint
TOOLS = {"docker-compose": "docker-compose"}
# and for `make test` alone: iproute2, whose `ip monitor` the local engine's bridge pinner
# follows, which tests/stack runs without the engine (a bare Debian 12 has no `ip`)
TEST_TOOLS = {"ip": "iproute2"}
VENV_PACKAGE = "python3-venv"  # Debian's Python has no ensurepip without it
PURPOSES = ("venv", "up", "test")


def docker_engine_error() -> str | None:
    """None when a Docker engine answers (a ping through the client), else why not."""
    try:
        done = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True, text=True, timeout=15, check=False,
        )  # fmt: skip
    except FileNotFoundError:
        return "the docker client is not installed"
    except subprocess.TimeoutExpired:
        return "the Docker engine did not answer within 15 s"
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or ["docker version failed"])[-1]
    return None


def missing_binaries(binaries: dict[str, str]) -> list[str]:
    """The packages of ``{binary: package}`` whose binary is not there (a path, or on PATH)."""
    return sorted(
        {
            package
            for binary, package in binaries.items()
            if not (Path(binary).exists() if binary.startswith("/") else shutil.which(binary))
        }
    )


def runtime_missing() -> list[str]:
    """What the native runtime needs: the services' binaries and the tools."""
    return missing_binaries(debian_binaries() | TOOLS)


def venv_missing(venv: Path = ROOT / ".venv") -> list[str]:
    """python3-venv, when .venv is still to be made by Debian's Python without ensurepip."""
    if os.path.lexists(venv / "bin" / "python") or importlib.util.find_spec("ensurepip"):
        return []
    return [VENV_PACKAGE] if sys.prefix == "/usr" else []


def _runs_natively(runtime: str, env: str) -> bool:
    """As stack/__main__.py decides: auto picks native for dev alone, without a Docker engine."""
    if runtime == "auto":
        return env == "dev" and docker_engine_error() is not None
    return runtime == "native"


def needed(purpose: str, runtime: str = "auto", env: str = "dev") -> list[str]:
    """The missing packages ``make <purpose>`` needs. ``up`` needs the native runtime's
    unless it runs Compose (asked for, or auto with a Docker engine answering)."""
    missing = venv_missing()
    if purpose == "test" or (purpose == "up" and _runs_natively(runtime, env)):
        missing += runtime_missing()
    if purpose == "test":
        missing += missing_binaries(TEST_TOOLS)
    return sorted(set(missing))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m stack.packages", description=__doc__)
    p.add_argument("purpose", choices=PURPOSES)
    p.add_argument("--runtime", default="auto", choices=("auto", "native", "compose"))
    p.add_argument("--env", default="dev")
    args = p.parse_args(argv)
    try:
        apt.install(needed(args.purpose, args.runtime, args.env), f"make {args.purpose}")
    except StackError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
