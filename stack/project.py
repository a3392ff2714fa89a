"""The project model: one environment of the stack as Compose sees it, built once and used by
the checks (lint, preflight), both runtimes and the integration tests.

An environment is its Compose files (compose.yaml, compose.<env>.yaml; in the HA topology
compose.ha.yaml and, where it exists, compose.<env>.ha.yaml; on the local engine
compose.local-images.yaml, and in HA compose.local-images.ha.yaml), the variables they
interpolate (compose/versions.env, the local images, compose/env/<env>.env, ENV, TOPOLOGY,
where `make up` put the secrets) and its run directory. Its topology is the one asked for,
else the environment's TOPOLOGY setting. The merged, interpolated services come from Compose
itself (`docker-compose config`, Debian's Compose v1), never from a re-implementation.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import ROOT
from .services import Service, local_images, records
from .settings import StackError, environment_settings, images, topology
from .yamlfile import load_yaml

COMPOSE = "docker-compose"  # Debian's Compose v1: `config` merges and interpolates
MAX_REPLICAS = 9  # of one service (API_REPLICAS, ...): natively each takes a port of its own


@dataclass(frozen=True)
class Project:
    env: str
    run_dir: Path  # .run/<env>: secrets and the rendered Alertmanager configuration
    local: bool = False  # the local engine: its overlay and its images
    root: Path = ROOT
    topology: str | None = None  # single or ha; None: the environment's TOPOLOGY

    def __post_init__(self) -> None:
        object.__setattr__(self, "topology", topology(self.env, self.topology, self.root))

    @property
    def name(self) -> str:
        """Its Compose project: COMPOSE_PROJECT_NAME where set, as Compose reads it (the
        integration suite's own), else assistant-<env>."""
        return os.environ.get("COMPOSE_PROJECT_NAME") or f"assistant-{self.env}"

    @property
    def ha(self) -> bool:
        return self.topology == "ha"

    def files(self) -> list[Path]:
        names = ["compose.yaml", f"compose.{self.env}.yaml"]
        if self.ha:
            names += ["compose.ha.yaml", f"compose.{self.env}.ha.yaml"]
        if self.local:  # the local engine's overlay, then its HA topology's
            names += ["compose.local-images.yaml", *["compose.local-images.ha.yaml"] * self.ha]
        optional = f"compose.{self.env}.ha.yaml"  # the environment's HA settings, if any
        found = [self.root / "compose" / name for name in names]
        return [f for f in found if f.name != optional or f.exists()]

    def compose_args(self) -> list[str]:
        """``--project-name`` and every ``-f``, for any Compose command."""
        return ["--project-name", self.name, *(a for f in self.files() for a in ("-f", str(f)))]

    def replicas(self, environ: Mapping[str, str] = os.environ) -> dict[str, int]:
        """How many of each replicated service run (its record's ``replicas`` variable):
        ``environ``'s value (make up API_REPLICAS=3), else the environment's setting, else 1."""
        settings = environment_settings(self.env, self.root)
        found = {}
        for name, record in self.records().items():
            if record.replicas:
                raw = environ.get(record.replicas) or settings.get(record.replicas) or "1"
                if not raw.isdigit() or not 1 <= int(raw) <= MAX_REPLICAS:
                    raise StackError(
                        f"{record.replicas}={raw!r}: the number of {name} replicas is a whole "
                        f"number from 1 to {MAX_REPLICAS}"
                    )
                found[name] = int(raw)
        return found

    def variables(self) -> dict[str, str]:
        replicas = self.replicas()
        counts = {str(records()[n].replicas): str(c) for n, c in replicas.items()}
        return {
            **images(self.root),
            **(local_images() if self.local else {}),
            **environment_settings(self.env, self.root),
            **counts,
            **published_ports(replicas, local=self.local),
            "TOPOLOGY": str(self.topology),
            "STACK_ENV": self.env,
            "STACK_RUN_DIR": str(self.run_dir),
        }

    def environ(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The process environment for a Compose command: ``base`` (os.environ) and ours."""
        return {**(os.environ if base is None else base), **self.variables()}

    def config(self) -> dict[str, Any]:
        """The merged, interpolated project, as Compose prints it."""
        return _config(
            tuple(self.compose_args()), tuple(sorted(self.variables().items())), self.root
        )

    def services(self) -> dict[str, dict[str, Any]]:
        return self.config()["services"]  # type: ignore[no-any-return]

    def records(self) -> dict[str, Service]:
        return records()

    def exposed_ports(self, service: str) -> list[int]:
        """The ports it exposes, in order: its own, then its metrics listener's, if any."""
        return [int(str(p).split("/")[0]) for p in self.services()[service].get("expose") or []]

    def exposed_port(self, service: str) -> int | None:
        """The port the service listens on in its container (its first `expose`)."""
        return next(iter(self.exposed_ports(service)), None)

    def metrics_port(self, service: str) -> int | None:
        """Its metrics listener's port in its container (its second `expose`), where its
        record has a ``metrics_port``."""
        exposed = self.exposed_ports(service)
        return exposed[1] if self.records()[service].metrics_port and len(exposed) > 1 else None

    def start_waves(self) -> list[list[str]]:
        """The services in waves, each depending only on earlier ones (`depends_on`)."""
        services = self.services()
        placed: dict[str, int] = {}
        for _ in range(len(services) + 1):
            for name, service in services.items():
                deps = [d for d in service.get("depends_on") or {} if d in services]
                if all(d in placed for d in deps):
                    placed[name] = 1 + max((placed[d] for d in deps), default=-1)
            if len(placed) == len(services):
                break
        else:
            loop = sorted(set(services) - set(placed))
            raise StackError(f"depends_on has a cycle among {', '.join(loop)}")
        waves: list[list[str]] = [[] for _ in range(max(placed.values()) + 1)]
        for name in sorted(placed):
            waves[placed[name]].append(name)
        return [w for w in waves if w]

    def healthcheck_url(self, service: str) -> str | None:
        """``http://127.0.0.1:<port><path>`` its healthcheck fetches, if it fetches one."""
        test = (self.services()[service].get("healthcheck") or {}).get("test") or []
        found = re.search(r"http://127\.0\.0\.1:\d+\S*", " ".join(map(str, test)))
        return found[0] if found else None

    def healthcheck_secret(self, service: str) -> str | None:
        """``/run/secrets/<name>``, the mounted secret its healthcheck sends as its
        ``Authorization`` header (stack/webauth.py), if it sends one."""
        test = (self.services()[service].get("healthcheck") or {}).get("test") or []
        found = re.search(r"Authorization: \$+\(cat (/run/secrets/[\w.-]+)\)", " ".join(test))
        return found[1] if found else None


# the port the API publishes in dev when API_PORT does not move it (compose.dev.yaml)
PUBLISHED_DEFAULT = 8000


def published_ports(
    replicas: Mapping[str, int], environ: Mapping[str, str] = os.environ, local: bool = False
) -> dict[str, str]:
    """``<port variable>_PUBLISHED``, the host side of a replicated service's published port in
    the dev overlay: ``API_PORT`` for one replica, as ever; for N, one host port each, the
    range ``API_PORT-<API_PORT + N - 1>``, or on the local engine none (Podman's Docker API
    refuses a range: the engine picks a free port per replica, `compose port --index`)."""
    found = {}
    for name, count in replicas.items():
        variable = records()[name].port
        if variable:
            first = environ.get(variable) or str(PUBLISHED_DEFAULT)
            last = int(first) + count - 1 if first.isdigit() else first
            found[f"{variable}_PUBLISHED"] = (
                first if count == 1 else "" if local else f"{first}-{last}"
            )
    return found


def job_hosts(job: Mapping[str, Any]) -> set[str]:
    """The hosts a scrape job names: its static targets' (``localhost`` as written) and the
    names its DNS discovery resolves (every replica of a Compose service)."""
    static = {str(t).rpartition(":")[0] for c in job.get("static_configs") or []
              for t in c.get("targets") or []}  # fmt: skip
    return static | {str(n) for c in job.get("dns_sd_configs") or [] for n in c.get("names") or []}


@functools.cache
def _config(
    args: tuple[str, ...], variables: tuple[tuple[str, str], ...], root: Path
) -> dict[str, Any]:
    try:
        done = subprocess.run(
            [COMPOSE, *args, "config"], cwd=root, env={**os.environ, **dict(variables)},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    except FileNotFoundError as exc:
        raise StackError(
            f"{COMPOSE} is not installed (Debian package docker-compose; make up installs it)"
        ) from exc
    if done.returncode != 0:
        raise StackError(f"{COMPOSE} config failed:\n{done.stderr.strip()}")
    return load_yaml(done.stdout)  # type: ignore[no-any-return]
