"""The service records (stack/services.toml): per Compose service, what the Compose files do
not say. Standard library only: make reads the Debian packages from here before .venv exists."""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from .settings import StackError

RECORDS = Path(__file__).with_name("services.toml")
RUNS = ("binary", "python", "assistant", "postgres", "redis", "grafana")
PINNED = re.compile(r"[^\s@]+:[^\s:@/]+@sha256:[0-9a-f]{64}")  # repository:tag@sha256:digest
# the HA topology's long-term store and global view: its service, record and Prometheus job
GLOBAL_VIEW = "victoriametrics"
# the rules evaluated once on the global view (vmalert): its service, record and job
GLOBAL_RULES = "vmalert"


@dataclass(frozen=True)
class Service:
    name: str
    runs: str
    package: str | None = None
    binary: str | None = None
    version: str | None = None
    image: str | None = None  # its official image, pinned by tag and digest
    port: str | None = None
    local_port: int | None = None
    job: str | None = None
    listen: str | None = None
    # the variable that moves its metrics listener's port natively (its second `expose`)
    metrics_port: str | None = None
    local_metrics_port: int | None = None
    cluster_port: str | None = None  # the variable that moves its gossip port natively
    local_cluster_port: int | None = None
    replicas: str | None = None  # the variable that sets how many of it run
    local_image: str | None = None  # its local image's folder in images/, if not its name

    @property
    def image_variable(self) -> str:
        """The variable compose/versions.env pins its image in, if it has one: its local
        image's folder in capitals (node-exporter: NODE_EXPORTER_IMAGE; the receiver's
        python: PYTHON_IMAGE)."""
        return f"{(self.local_image or self.name).upper().replace('-', '_')}_IMAGE"


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
        if "image" in values and not PINNED.fullmatch(values["image"]):
            raise StackError(
                f"{path.name} [{name}]: image {values['image']!r} is not pinned as "
                "repository:tag@sha256:<digest>"
            )
        found[name] = Service(name, **values)
    return found


def debian_binaries(path: Path = RECORDS) -> dict[str, str]:
    """``{binary: package}`` of every service the native runtime runs from Debian."""
    return {s.binary: s.package for s in records(path).values() if s.binary and s.package}


def pins(path: Path = RECORDS) -> dict[str, str]:
    """``{image variable: pinned image}`` of every record with an image: what make generate
    writes to compose/versions.env."""
    return {s.image_variable: s.image for s in records(path).values() if s.image}


def local_images(path: Path = RECORDS) -> dict[str, str]:
    """The local engine's images (`make images`), which replace the pinned ones there: one per
    record with an image and a Debian package, built from images/<folder>/Containerfile."""
    return {
        s.image_variable: f"localhost/stack-{s.local_image or s.name}:bookworm"
        for s in records(path).values()
        if s.image and s.package
    }
