"""The API and the worker run as N replicas (API_REPLICAS, WORKER_REPLICAS) on both runtimes,
each its own scrape target; other hosts' node exporters come from files in a folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from stack import ENVIRONMENTS, ROOT
from stack.lint import stand_in_run_dir
from stack.native import check_replicas
from stack.native_config import (
    REPLICA_STRIDE,
    Layout,
    components,
    discovered_targets,
    ports,
    prometheus_config,
)
from stack.processes import start_time
from stack.project import MAX_REPLICAS, Project
from stack.render import prometheus_file
from stack.settings import TOPOLOGIES, StackError

NODE_FILES = "/etc/prometheus/targets/node/*.yml"


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    stand_in_run_dir("dev", tmp_path)
    return Layout("dev", tmp_path)


def test_one_of_each_unless_asked_for_more(layout: Layout) -> None:
    project = Project("dev", layout.run_dir)
    assert project.replicas({}) == {"api": 1, "worker": 1}
    assert project.replicas({"API_REPLICAS": "3"}) == {"api": 3, "worker": 1}


@pytest.mark.parametrize("raw", ["0", str(MAX_REPLICAS + 1), "two", "-1", "1.5"])
def test_the_number_of_replicas_is_a_whole_number_within_bounds(layout: Layout, raw: str) -> None:
    with pytest.raises(StackError, match=rf"API_REPLICAS='{raw}'.* from 1 to {MAX_REPLICAS}"):
        Project("dev", layout.run_dir).replicas({"API_REPLICAS": raw})


def test_compose_runs_the_replicas_and_dev_publishes_a_port_each(
    layout: Layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    single = Project("dev", layout.run_dir).services()
    assert single["api"]["deploy"]["replicas"] == 1
    assert single["api"]["ports"] == ["127.0.0.1:8000:8000/tcp"]  # as before replicas
    monkeypatch.setenv("API_REPLICAS", "3")
    monkeypatch.setenv("WORKER_REPLICAS", "2")
    monkeypatch.setenv("API_PORT", "18000")
    services = Project("dev", layout.run_dir).services()
    assert services["api"]["deploy"]["replicas"] == 3
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["api"]["ports"] == ["127.0.0.1:18000-18002:8000/tcp"]
    # Podman's Docker API refuses a range (strconv.Atoi: parsing "8000-8002"): a free port each
    local = Project("dev", layout.run_dir, local=True).services()
    assert local["api"]["ports"] == ["127.0.0.1::8000/tcp"]


def test_natively_each_replica_is_a_process_on_its_own_port(
    layout: Layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_REPLICAS", "3")
    project = Project("dev", layout.run_dir)
    local = ports(project)
    made = {c.name: c for c in components(project, layout, local, "url_file")}
    apis = [c for c in made.values() if c.service == "api"]
    assert [c.name for c in apis] == ["api", "api-2", "api-3"]
    assert [c.port for c in apis] == [8000, 8000 + REPLICA_STRIDE, 8000 + 2 * REPLICA_STRIDE]
    assert [c.env["ASSISTANT_PORT"] for c in apis] == [str(c.port) for c in apis]
    # the metrics listener: a second port each, REPLICA_STRIDE apart too, the worker's beside
    assert [c.metrics for c in apis] == [9464, 9464 + REPLICA_STRIDE, 9464 + 2 * REPLICA_STRIDE]
    assert [c.env["ASSISTANT_METRICS_PORT"] for c in apis] == [str(c.metrics) for c in apis]
    assert (made["worker"].metrics, made["worker"].env["ASSISTANT_METRICS_PORT"]) == (9465, "9465")
    assert {c.job for c in apis} == {"personal_assistant_api"}
    assert [c.argv for c in apis] == [apis[0].argv] * 3  # the same process, each its port
    assert [c.name for c in made.values() if c.service == "worker"] == ["worker"]
    assert len(set(local.values())) == len(local)  # no replica meets another port


@pytest.mark.parametrize("topology", ["single", "ha"])
def test_natively_prometheus_reads_the_replicas_from_a_file(
    layout: Layout, monkeypatch: pytest.MonkeyPatch, topology: str
) -> None:
    monkeypatch.setenv("API_REPLICAS", "3")
    project = Project("dev", layout.run_dir, topology=topology)
    local = ports(project, {"API_METRICS_PORT": "19464", "API_REPLICAS": "3"})
    running = {c.name for c in components(project, layout, local, "url_file")}
    [(path, text)] = discovered_targets(project, layout, local, running).items()
    assert path == layout.targets_dir / "personal_assistant_api.yml"
    assert yaml.safe_load(text) == [  # each replica's metrics listener, as Compose's job
        {"targets": ["127.0.0.1:19464"], "labels": {"__meta_dns_name": "api"}},
        {"targets": ["127.0.0.1:19474"], "labels": {"__meta_dns_name": "api"}},
        {"targets": ["127.0.0.1:19484"], "labels": {"__meta_dns_name": "api"}},
        {"targets": ["127.0.0.1:9465"], "labels": {"__meta_dns_name": "worker"}},
    ]
    config = yaml.safe_load(prometheus_config(project, layout, local, running))
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    api = jobs["personal_assistant_api"]
    assert "dns_sd_configs" not in api
    assert api["file_sd_configs"] == [{"files": [str(path)], "refresh_interval": "2s"}]
    assert api["relabel_configs"][0]["target_label"] == "component"  # Compose's relabelling
    node = jobs["node"]["file_sd_configs"]
    assert node == [{"files": [str(ROOT / "prometheus" / "targets" / "node" / "*.yml")]}]


@pytest.mark.parametrize("ha", [False, True])
@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_prometheus_discovers_the_replicas_and_other_hosts(env: str, ha: bool) -> None:
    text = (ROOT / "prometheus" / "generated" / prometheus_file(env, ha)).read_text()
    jobs = {j["job_name"]: j for j in yaml.safe_load(text)["scrape_configs"]}
    assert jobs["personal_assistant_api"]["dns_sd_configs"] == [
        {"names": ["api", "worker"], "type": "A", "port": 9464, "refresh_interval": "2s"}
    ]
    assert "static_configs" not in jobs["personal_assistant_api"]
    assert jobs["node"]["static_configs"] == [{"targets": ["node-exporter:9100"]}]
    assert jobs["node"]["file_sd_configs"] == [{"files": [NODE_FILES]}]


@pytest.mark.parametrize("topology", ["single", "ha"])
@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_prometheus_container_mounts_the_discovery_folder(
    env: str, topology: str, tmp_path: Path
) -> None:
    project = Project(env, stand_in_run_dir(env, tmp_path), topology=topology)
    scrapers = [n for n in project.services() if n.startswith("prometheus")]
    assert len(scrapers) == (2 if topology == "ha" else 1)
    for name in scrapers:
        volumes = project.services()[name]["volumes"]
        mount = f"{ROOT / 'prometheus' / 'targets'}:/etc/prometheus/targets:ro"
        assert mount in volumes, name


def test_the_example_host_file_is_valid_and_not_loaded() -> None:
    folder = ROOT / "prometheus" / "targets" / "node"
    assert not list(folder.glob("*.yml"))  # nothing of the repository's is scraped
    groups = yaml.safe_load((folder / "example.yml.example").read_text())
    assert all(set(g) <= {"targets", "labels"} and g["targets"] for g in groups)
    assert all(":" in t for g in groups for t in g["targets"])


def test_natively_replicas_are_added_to_a_running_stack_never_taken_away() -> None:
    me = {"pid": os.getpid(), "start_time": start_time(os.getpid()), "log": "-"}
    state = {"components": {"api": me, "api-2": me | {"service": "api"}, "worker": me}}
    check_replicas(state, {"api", "api-2", "api-3", "worker"}, "dev")  # one more: started
    with pytest.raises(StackError, match=r"runs api-2 too: for fewer replicas, stop it first"):
        check_replicas(state, {"api", "worker"}, "dev")


@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_prometheus_replica_finds_each_discovered_replica_at_one_address(
    env: str, topology: str, tmp_path: Path
) -> None:
    """DNS answers a service's name with its address on the network asked; a Prometheus sharing
    two networks with it asks either (Podman orders a container's resolvers anew at every
    start), so the pair could label one replica with two instances: two series in the global
    view, the replica counted twice (seen in dev's HA topology on the local engine)."""
    model = Project(env, stand_in_run_dir(env, tmp_path), topology=topology)
    services = model.services()
    config = yaml.safe_load(
        (ROOT / "prometheus" / "generated" / prometheus_file(env, model.ha)).read_text()
    )
    discovered = {n for job in config["scrape_configs"] for dns in job.get("dns_sd_configs") or []
                  for n in dns["names"]}  # fmt: skip
    scrapers = [n for n, r in model.records().items() if r.job == "prometheus" and n in services]
    assert discovered and scrapers
    for scraper in scrapers:
        for name in discovered:
            shared = set(services[name]["networks"]) & set(services[scraper]["networks"])
            assert len(shared) == 1, f"{env}, {topology}: {scraper} reaches {name} on {shared}"
