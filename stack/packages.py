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
from .settings import StackError

# The native runtime's binaries, by Compose service: (binary, Debian package)
RUNTIME_BINARIES = {
    "prometheus": ("prometheus", "prometheus"),
    "alertmanager": ("prometheus-alertmanager", "prometheus-alertmanager"),
    "node-exporter": ("prometheus-node-exporter", "prometheus-node-exporter"),
    "postgres-exporter": ("prometheus-postgres-exporter", "prometheus-postgres-exporter"),
    "redis-exporter": ("prometheus-redis-exporter", "prometheus-redis-exporter"),
    "redis": ("redis-server", "redis-server"),
}
# PostgreSQL's binaries are not on PATH: /usr/lib/postgresql/<major>/bin/
POSTGRES_PACKAGE = "postgresql"
# What the checks and suites need beside the runtime's: binary -> Debian package
TEST_BINARIES = {
    "docker-compose": "docker-compose",  # make lint: `docker-compose config` per environment
}
VENV_PACKAGE = "python3-venv"  # Debian's Python has no ensurepip without it
PURPOSES = ("venv", "up", "test")


def postgres_bin(name: str) -> str | None:
    """The newest installed PostgreSQL's ``name`` (initdb, postgres, pg_ctl, ...)."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    return str(versions[-1]) if versions else None


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
    missing = missing_binaries(dict(RUNTIME_BINARIES.values()))
    if postgres_bin("postgres") is None:
        missing.append(POSTGRES_PACKAGE)
    return sorted(missing)


def venv_missing(venv: Path = ROOT / ".venv") -> list[str]:
    """python3-venv, when .venv is still to be made by Debian's Python without ensurepip."""
    if os.path.lexists(venv / "bin" / "python") or importlib.util.find_spec("ensurepip"):
        return []
    return [VENV_PACKAGE] if sys.prefix == "/usr" else []


def needed(purpose: str, runtime: str = "auto") -> list[str]:
    """The missing packages ``make <purpose>`` needs. ``up`` needs the native runtime's
    unless it runs Compose (asked for, or auto with a Docker engine answering)."""
    missing = venv_missing()
    if purpose == "test":
        missing += runtime_missing() + missing_binaries(TEST_BINARIES)
    elif purpose == "up" and (
        runtime == "native" or (runtime == "auto" and docker_engine_error() is not None)
    ):
        missing += runtime_missing()
    return sorted(set(missing))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m stack.packages", description=__doc__)
    p.add_argument("purpose", choices=PURPOSES)
    p.add_argument("--runtime", default="auto", choices=("auto", "native", "compose"))
    args = p.parse_args(argv)
    try:
        apt.install(needed(args.purpose, args.runtime), f"make {args.purpose}")
    except StackError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
