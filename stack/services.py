"""The service records (stack/services.toml): per Compose service, what the Compose files do
not say. Standard library only: make reads the Debian packages from here before .venv exists."""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from .settings import StackError

RECORDS = Path(__file__).with_name("services.toml")
RUNS = ("binary", "python", "assistant", "postgres", "redis", "grafana")


@dataclass(frozen=True)
class Service:
    name: str
    runs: str
    package: str | None = None
    binary: str | None = None
    version: str | None = None
    image: str | None = None
    port: str | None = None
    local_port: int | None = None
    job: str | None = None
    listen: str | None = None
    early: bool = False
    local_image: str | None = None  # its local image's folder in images/, if not its name


@functools.cache
def records(path: Path = RECORDS) -> dict[str, Service]:
    """Every record by service name (read once per process; callers do not change it); a
    field or `runs` value that does not exist is an error naming the service."""
    known = {f.name for f in fields(Service)} - {"name"}
    found = {}
    for name, values in tomllib.loads(path.read_text()).items():
        unknown = set(values) - known
        if unknown or values.get("runs") not in RUNS:
            raise StackError(
                f"{path.name} [{name}]: unknown fields {sorted(unknown)}" if unknown
                else f"{path.name} [{name}]: runs must be one of {', '.join(RUNS)}"
            )  # fmt: skip
        found[name] = Service(name, **values)
    return found


def debian_binaries(path: Path = RECORDS) -> dict[str, str]:
    """``{binary: package}`` of every service the native runtime runs from Debian."""
    return {s.binary: s.package for s in records(path).values() if s.binary and s.package}


def local_images(path: Path = RECORDS) -> dict[str, str]:
    """The local engine's images (`make images`), which replace the pinned ones there: one per
    record with an image and a Debian package, built from images/<folder>/Containerfile."""
    return {
        s.image: f"localhost/stack-{s.local_image or s.name}:bookworm"
        for s in records(path).values()
        if s.image and s.package
    }
