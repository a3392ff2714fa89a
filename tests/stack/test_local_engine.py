"""Compose without Docker, what can be checked without the engine: the local images' plan, the
overlay changing only images, Grafana and Prometheus' configuration mount, and the Prometheus
configuration it mounts. The engine itself runs in CI (`make test-integration RUNTIME=compose`)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from stack import ENVIRONMENTS, ROOT, bridge_pin, engine, images, processes
from stack.compose import local_prometheus_config
from stack.lint import stand_in_run_dir
from stack.project import Project, job_hosts
from stack.settings import TOPOLOGIES, StackError

from .test_compose_files import merged

LOCAL_NAMES = ("localhost/", "assistant:", "redis-exporter:", "victoriametrics:")
CONFIG_MOUNT = "/etc/prometheus/generated/prometheus.yml"


def runs_anywhere(services: dict) -> dict:
    """The merged services with each stand-in run directory (a temporary one per merge) named
    alike."""
    return json.loads(re.sub(r"/tmp/[\w.-]+/", "<run>/", json.dumps(services)))


def test_every_local_image_is_built_after_its_parent() -> None:
    plan = images.plan()
    seen: set[str] = set()
    for image in plan:
        assert image.parent is None or image.parent in seen, image
        seen.add(image.tag)
    assert set(images.local_images().values()) <= seen
    assert {images.ASSISTANT, images.REDIS_EXPORTER_WRAPPER, images.VICTORIAMETRICS_WRAPPER} <= seen


def test_a_local_image_without_a_containerfile_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="has no images/<name>/Containerfile"):
        images._folder("localhost/stack-grafana:bookworm")


def test_the_mirror_comes_from_the_machines_sources(tmp_path: Path) -> None:
    deb822 = tmp_path / "debian.sources"
    deb822.write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://security.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n"
    )
    legacy = tmp_path / "sources.list"
    assert images.mirror(deb822, legacy) == "http://mirror.example/debian"
    legacy.write_text("# comment\ndeb http://old.example/debian bookworm main\n")
    assert images.mirror(tmp_path / "none", legacy) == "http://old.example/debian"
    with pytest.raises(StackError, match="no Debian bookworm mirror"):
        images.mirror(tmp_path / "none", tmp_path / "none.list")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_overlay_changes_only_images_grafana_and_prometheus_config(env: str) -> None:
    official, local = (runs_anywhere(merged(env, local=x)["services"]) for x in (False, True))
    assert official.keys() == local.keys()
    for name, service in local.items():
        service, before = dict(service), dict(official[name])
        if name == "grafana":
            assert service.pop("profiles") == ["grafana-image"]  # left out unless enabled
        else:
            assert service["image"].startswith(LOCAL_NAMES), (name, service["image"])
        service.pop("image"), before.pop("image")
        if name in ("prometheus", "prometheus-2"):  # the replicas read the same copy
            mounts = {v.split(":")[1]: v.split(":")[0] for v in service.pop("volumes")}
            assert mounts.pop("/etc/prometheus/generated/prometheus.yml").endswith(
                f"/{env}/prometheus.yml"
            )
            before_mounts = {v.split(":")[1]: v.split(":")[0] for v in before.pop("volumes")}
            before_mounts.pop("/etc/prometheus/generated/prometheus.yml")
            assert mounts == before_mounts
        if "build" in before:  # built images keep their Dockerfile; only the base images change
            service["build"].pop("args"), before["build"].pop("args")
        assert service == before, name


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_local_prometheus_config_drops_only_the_grafana_job(env: str, tmp_path: Path) -> None:
    path = local_prometheus_config(env, tmp_path)
    local = yaml.safe_load(path.read_text())
    source = yaml.safe_load((ROOT / "prometheus/generated" / f"prometheus.{env}.yml").read_text())
    jobs = [j for j in source["scrape_configs"] if j["job_name"] != "grafana"]
    assert len(jobs) == len(source["scrape_configs"]) - 1
    assert local == source | {"scrape_configs": jobs}


@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_prometheus_replica_scrapes_only_services_that_run_there(
    env: str, topology: str, tmp_path: Path
) -> None:
    """No replica reads a configuration with the grafana job, which the local engine lacks (a
    target down for good on that replica)."""
    model = Project(env, stand_in_run_dir(env, tmp_path), True, topology=topology)
    local_prometheus_config(env, model.run_dir, model.ha)
    services = model.services()
    running = {n for n, s in services.items() if not s.get("profiles")}
    replicas = [n for n, r in model.records().items() if r.job == "prometheus" and n in services]
    assert len(replicas) == (2 if model.ha else 1)
    for name in replicas:
        mounts = {v.split(":")[1]: v.split(":")[0] for v in services[name]["volumes"]}
        config = yaml.safe_load(Path(mounts[CONFIG_MOUNT]).read_text())
        for job in config["scrape_configs"]:
            hosts = {"prometheus" if h == "localhost" else h for h in job_hosts(job)}
            assert hosts <= running, f"{name}: job {job['job_name']} scrapes {hosts - running}"


def test_the_engine_client_environment_points_at_its_socket() -> None:
    environ = engine.client_env()
    assert environ["DOCKER_HOST"] == f"unix://{engine.SOCKET}"
    assert Path(environ["CONTAINERS_CONF"]).read_text().count('runtime = "runc"') == 1
    assert environ["TESTCONTAINERS_RYUK_DISABLED"] == "true"


def test_the_engines_bridges_not_yet_pinned_are_the_ones_pinned(tmp_path: Path) -> None:
    def link(name: str, bridge: bool, assign_type: str, mac: str = "0a:00:00:00:00:07") -> None:
        (tmp_path / name).mkdir()
        if bridge:
            (tmp_path / name / "bridge").mkdir()
        (tmp_path / name / "addr_assign_type").write_text(assign_type + "\n")
        (tmp_path / name / "address").write_text(mac + "\n")

    link("podman3", bridge=True, assign_type="1")  # the kernel's choice: follows its ports
    link("podman4", bridge=True, assign_type="3")  # pinned already
    link("podman5", bridge=False, assign_type="1")  # not a bridge
    link("docker0", bridge=True, assign_type="1")  # not the engine's
    # its ports gone: pinned at the next port's MAC, never at none
    link("podman6", bridge=True, assign_type="1", mac="00:00:00:00:00:00")
    assert bridge_pin.unpinned(tmp_path) == {"podman3": "0a:00:00:00:00:07"}


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def test_the_pinner_stopped_by_pid_leaves_no_process_behind() -> None:
    """`make engine-down` stops the helper by PID (SIGTERM); its `ip monitor` child must go
    with it, not linger for every engine started since."""
    with subprocess.Popen(["sleep", "60"]) as stand_in_engine:
        ticks = processes.start_time(stand_in_engine.pid)
        pinner = subprocess.Popen(
            [sys.executable, "-m", "stack.bridge_pin", "--engine-pid", str(stand_in_engine.pid),
             "--engine-start-time", str(ticks)],
            cwd=ROOT, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        monitor: list[int] = []
        try:
            deadline = time.monotonic() + 10
            while not (monitor := children(pinner.pid)) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert monitor, f"no `ip monitor` within 10 s (the pinner's exit: {pinner.poll()})"
            pinner.send_signal(signal.SIGTERM)
            assert pinner.wait(timeout=10) == 0
            deadline = time.monotonic() + 5
            while (left := [pid for pid in monitor if processes.start_time(pid)]) and (
                time.monotonic() < deadline
            ):
                time.sleep(0.05)
            assert not left, f"`ip monitor` left running: {left}"
        finally:
            for pid in [pinner.pid, *children(pinner.pid), *monitor]:
                if processes.start_time(pid):
                    os.kill(pid, signal.SIGKILL)
            pinner.wait(timeout=10)
            stand_in_engine.kill()
