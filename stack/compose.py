"""The stack through Docker Compose v2: ``make up|down|status|logs ENV=...``. On a Docker
engine, with the pinned images. Without one (or on Podman), on the local engine (engine.py)
with the local images (images.py) and the compose.local-images.yaml overlay."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import ROOT, engine, images, webauth
from .packages import docker_engine_error as engine_error
from .processes import wait_for_targets
from .project import Project
from .render import prometheus_file
from .secrets import changed_since_applied, mark_applied, run_root
from .services import GLOBAL_RULES, GLOBAL_VIEW
from .settings import StackError, check_environment
from .yamlfile import load_yaml

WAIT_TIMEOUT_SECONDS = 300


def engine_components() -> str:
    """The answering engine's components ("Engine containerd runc ...", "Podman Engine
    Conmon ...")."""
    done = subprocess.run(
        ["docker", "version", "--format", "{{range .Server.Components}}{{.Name}} {{end}}"],
        capture_output=True, text=True, timeout=15, check=False,
    )  # fmt: skip
    return done.stdout.strip()


@dataclass
class Target:
    """Where Compose runs: the environment its commands need, and whether the engine is the
    local one (local images, no registry, no Grafana)."""

    local: bool
    environ: dict[str, str] = field(default_factory=dict)


def target(start: bool, say=print) -> Target:
    """A Docker engine if one answers; else the local engine, started (and its images built)
    when ``start``."""
    reason = engine_error()
    if reason is None:
        local = "podman" in engine_components().lower()
        # Podman where DOCKER_HOST points: its clients need the same settings as ours
        found = Target(local, {**engine.client_env(), **os.environ} if local else {})
    elif engine.answers():
        found = Target(True, engine.client_env())
    elif start:
        say(f"no Docker engine answers ({reason}): using the local engine")
        found = Target(True, engine.up(say))
    else:
        raise StackError(
            f"no Docker engine answers ({reason}) and the local engine is not running (make engine)"
        )
    if start and found.local:
        images.build(say)
    return found


def compose_command() -> list[str]:
    done = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if done.returncode != 0:
        raise StackError("`docker compose` (Compose v2) is not installed")
    return ["docker", "compose"]


def local_prometheus_config(env: str, run_dir: Path, ha: bool = False, root: Path = ROOT) -> Path:
    """The environment's Prometheus configuration (its topology's) without the grafana job (no
    local Grafana image), for compose.local-images.yaml."""
    source = root / "prometheus" / "generated" / prometheus_file(env, ha)
    config = load_yaml(source.read_text())
    config["scrape_configs"] = [j for j in config["scrape_configs"] if j["job_name"] != "grafana"]
    target_file = run_dir / "prometheus.yml"
    header = f"# {source.relative_to(root)} without the grafana job (stack/compose.py)\n"
    target_file.write_text(header + yaml.safe_dump(config, sort_keys=False))
    return target_file


def project(env: str, run_dir: Path, where: Target, topology: str | None = None) -> Project:
    return Project(env, run_dir, where.local, topology=topology)


def _compose(
    model: Project, where: Target, *args: str, capture: bool = False
) -> subprocess.CompletedProcess[str]:
    command = [*compose_command(), *model.compose_args(), *args]
    environ = model.environ({**os.environ, **where.environ})
    return subprocess.run(
        command, cwd=ROOT, env=environ, capture_output=capture, text=True, check=False
    )


def up(env: str, topology: str | None = None) -> int:
    """After the checks (lint.preflight, which wrote .run/<env>)."""
    run_dir = run_root() / check_environment(env)
    where = target(start=True)
    model = project(env, run_dir, where, topology)
    args = ["up", "--detach", "--wait", "--wait-timeout", str(WAIT_TIMEOUT_SECONDS)]
    if where.local:
        local_prometheus_config(env, run_dir, model.ha)
        print("grafana: no Debian package, so no local image: left out on the local engine "
              "(and its Prometheus job)", flush=True)  # fmt: skip
        args += ["--pull", "never"]  # the images are local; a missing one is an error
    else:
        args.append("--build")
    if changed_since_applied(run_dir, "compose"):
        # Compose recreates a container when its configuration changes, not when the file
        # behind one of its secrets does; every container reads its secrets at start, and
        # postgres/entrypoint.sh sets the roles' passwords on every start
        print("secrets new or changed since the last `make up`: every container is recreated",
              flush=True)  # fmt: skip
        args.append("--force-recreate")
    print(f"starting the {env} stack with Docker Compose (waits until healthy)", flush=True)
    started = time.monotonic()
    code = _compose(model, where, *args).returncode
    if code != 0:
        return code
    mark_applied(run_dir, "compose")
    print(f"every container healthy after {time.monotonic() - started:.1f} s", flush=True)
    prometheus = published(model, where, "prometheus", 9090)
    if prometheus:  # dev publishes it; stage and prod do not
        wait_for_targets(prometheus, headers=webauth.headers(run_dir))
        print(f"every target up after {time.monotonic() - started:.1f} s", flush=True)
    return 0


def published(model: Project, where: Target, service: str, port: int) -> str | None:
    """``http://127.0.0.1:<port>`` where the service's port is published, else None."""
    done = _compose(model, where, "port", service, str(port), capture=True)
    address = done.stdout.strip().rsplit(":", 1)
    if done.returncode != 0 or len(address) != 2 or not address[1].isdigit():
        return None
    return f"http://127.0.0.1:{address[1]}"


def _existing(env: str, topology: str | None, *args: str) -> int:
    where = target(start=False)
    model = project(env, run_root() / check_environment(env), where, topology)
    return _compose(model, where, *args).returncode


def down(env: str, topology: str | None = None) -> int:
    return _existing(env, topology, "down")


def status(env: str, topology: str | None = None) -> int:
    """Every container; in the HA topology, the replicas, peers and global view too."""
    where = target(start=False)
    model = project(env, run_root() / check_environment(env), where, topology)
    code = _compose(model, where, "ps", "--all").returncode
    if code == 0 and model.ha:
        for line in ha_status(model, where):
            print("  " + line)
    return code


# what `make status` names in the HA topology: each group's services by their job
HA_GROUPS = (("prometheus replicas", "prometheus"), ("alertmanager peers", "alertmanager"),
             ("global view", GLOBAL_VIEW), ("rules on the global view", GLOBAL_RULES))  # fmt: skip


def ha_status(model: Project, where: Target) -> list[str]:
    """The HA topology's replicas, peers and global view, each with its published URL."""
    services = model.services()
    lines = []
    for title, job in HA_GROUPS:
        names = [n for n, r in model.records().items() if r.job == job and n in services]
        urls = [published(model, where, n, model.exposed_port(n) or 0) for n in names]
        found = [f"{n} {url or '(not published)'}" for n, url in zip(names, urls, strict=True)]
        lines.append(f"{title}: {', '.join(found)}")
    return lines


def logs(env: str, topology: str | None = None) -> int:
    return _existing(env, topology, "logs", "--tail", "200")


def clean(env: str, topology: str | None = None) -> int:
    """Stop the stack and remove its volumes (the data)."""
    return _existing(env, topology, "down", "--volumes")
