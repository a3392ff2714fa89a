"""The HA topology's long-term store and global view, VictoriaMetrics: in the HA topology
alone, written to by both replicas without their replica label, the same on both runtimes,
behind the monitoring user where the environment asks for it, and checked by make lint."""

from __future__ import annotations

import base64
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from stack import ENVIRONMENTS, ROOT, compose, lint, longterm, native, render
from stack.native_config import Layout, components, grafana_provisioning, ports, prometheus_config
from stack.processes import free_port
from stack.project import Project
from stack.services import debian_binaries

from .conftest import Process, edit

VM = "victoriametrics"


def project(env: str, where: Layout, topology: str) -> Project:
    return Project(env, lint.stand_in_run_dir(env, where.runs), topology=topology)


def generated(env: str, ha: bool) -> dict:
    path = ROOT / "prometheus" / "generated" / render.prometheus_file(env, ha)
    return yaml.safe_load(path.read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_only_the_ha_topology_has_it_and_writes_to_it(env: str, tmp_path: Path) -> None:
    where = Layout(env, tmp_path)
    assert VM not in project(env, where, "single").services()
    assert "remote_write" not in generated(env, ha=False)
    service = project(env, where, "ha").services()[VM]
    assert "victoriametrics-data:/storage:rw" in service["volumes"]
    (write,) = generated(env, ha=True)["remote_write"]
    assert write["url"] == "http://victoriametrics:8428/api/v1/write"
    assert {"action": "labeldrop", "regex": "replica"} in write["write_relabel_configs"]
    jobs = {j["job_name"]: j for j in generated(env, ha=True)["scrape_configs"]}
    assert jobs[VM]["static_configs"] == [{"targets": ["victoriametrics:8428"]}]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_its_dedup_is_the_scrape_interval_and_it_keeps_more_than_the_replicas(
    env: str, tmp_path: Path
) -> None:
    model = project(env, Layout(env, tmp_path), "ha")
    flags = longterm.flags(model.services()[VM])
    settings = model.variables()
    assert flags["-dedup.minScrapeInterval"] == settings["SCRAPE_INTERVAL"]
    assert flags["-search.latencyOffset"] == settings["VM_LATENCY_OFFSET"]
    kept = longterm.retention_seconds(flags["-retentionPeriod"])
    assert kept > longterm.seconds(settings["HA_RETENTION_TIME"])
    assert longterm.retention_seconds("13") == 13 * longterm.MONTH


def test_natively_it_runs_its_entry_point_in_front_of_debians_binary(tmp_path: Path) -> None:
    where = Layout("dev", tmp_path)
    model = project("dev", where, "ha")
    local = ports(model, {"VICTORIAMETRICS_PORT": "18428"})
    made = {c.name: c for c in components(model, where, local, "x")}[VM]
    assert made.argv[:3] == ["/bin/sh", str(ROOT / "victoriametrics" / "entrypoint.sh"),
                             shutil.which("victoria-metrics")]  # fmt: skip
    assert f"-storageDataPath={where.data_dir / 'victoriametrics-data'}" in made.argv
    assert made.argv[-1] == "-httpListenAddr=127.0.0.1:18428" and made.job == VM
    secret = str(where.run_dir / "secrets" / "monitoring_password")
    assert made.env["MONITORING_PASSWORD_FILE"] == secret
    assert made.env["MONITORING_AUTH"] == "none"


def test_natively_the_replicas_write_to_its_local_address(tmp_path: Path) -> None:
    where = Layout("dev", tmp_path)
    model = project("dev", where, "ha")
    local = ports(model, {"VICTORIAMETRICS_PORT": "18428"})
    config = yaml.safe_load(prometheus_config(model, where, local, set(model.services())))
    (write,) = config["remote_write"]
    assert write["url"] == "http://127.0.0.1:18428/api/v1/write"
    secret = str(where.run_dir / "secrets" / "monitoring_password")
    assert write["basic_auth"]["password_file"] == secret
    single = project("dev", where, "single")
    assert "remote_write" not in prometheus_config(single, where, ports(single, {}), {"api"})


def test_grafanas_dashboards_uid_is_the_global_view_in_ha_alone(tmp_path: Path) -> None:
    where = Layout("dev", tmp_path)
    found = {}
    for topology in ("single", "ha"):
        model = project("dev", where, topology)
        grafana_provisioning(model, where, ports(model, {"VICTORIAMETRICS_PORT": "18428"}))
        path = where.config_dir / "grafana-provisioning" / "datasources" / "prometheus.yml"
        sources = yaml.safe_load(path.read_text())["datasources"]
        found[topology] = {s["uid"]: (s["url"], s.get("isDefault", False)) for s in sources}
    assert found["single"] == {"prometheus": ("http://127.0.0.1:9090", True)}
    assert found["ha"] == {
        "prometheus": ("http://127.0.0.1:18428", True),
        "prometheus-replica-1": ("http://127.0.0.1:9090", False),
        "prometheus-replica-2": ("http://127.0.0.1:9091", False),
    }


def test_status_names_the_global_view() -> None:
    entries = {
        "prometheus": {"url": "http://127.0.0.1:9090", "job": "prometheus"},
        VM: {"url": "http://127.0.0.1:8428", "job": VM},
        "vmalert": {"url": "http://127.0.0.1:8880", "job": "vmalert"},
    }
    *_, view, rules = native.replicas(entries, {})
    assert view.startswith("global view: victoriametrics http://127.0.0.1:8428 ")
    assert rules.startswith("rules on the global view: vmalert http://127.0.0.1:8880 ")


@pytest.mark.skipif(shutil.which("victoria-metrics") is None, reason="no victoria-metrics")
def test_with_basic_auth_it_refuses_anonymous_requests_and_hides_the_password(
    tmp_path: Path, processes: list[Process]
) -> None:
    """stage's native VictoriaMetrics (MONITORING_AUTH=basic), on a free port."""
    where = Layout("stage", tmp_path)
    model = project("stage", where, "ha")
    local = ports(model, {"VICTORIAMETRICS_PORT": str(free_port())})
    made = {c.name: c for c in components(model, where, local, "x")}[VM]
    assert made.env["MONITORING_AUTH"] == "basic"
    processes.append(Process(made.argv, tmp_path / "vm.log", f"{made.url}/health", env=made.env))
    password = (where.run_dir / "secrets" / "monitoring_password").read_text().strip()
    query = f"{made.url}/api/v1/query?query=1"

    def status(user: str | None) -> int:
        request = urllib.request.Request(query)
        if user:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    assert status(None) == 401 and status("someone") == 401 and status("monitoring") == 200
    pid = processes[-1].running.pid
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
    assert "victoria-metrics" in argv and password not in argv and "httpAuth" not in argv


def test_lint_refuses_dedup_off_the_interval_short_retention_no_user_and_the_replica_label(
    repo_copy: Path, tmp_path: Path
) -> None:
    checks = {c.name: c.problems for c in lint.long_term_store(repo_copy, tmp_path)}
    assert not any(checks.values())
    dedup = "-dedup.minScrapeInterval=${SCRAPE_INTERVAL:?compose/env/<env>.env is not loaded}"
    edit(repo_copy / "compose" / "compose.ha.yaml", dedup, "-dedup.minScrapeInterval=5s")
    envflag = "      - -envflag.enable  # -httpAuth.* from the environment its entry point sets\n"
    edit(repo_copy / "compose" / "compose.ha.yaml", envflag, "")
    edit(
        repo_copy / "compose" / "env" / "prod.env",
        "VM_RETENTION_PERIOD=13",
        "VM_RETENTION_PERIOD=2d",
    )
    dropped = "write_relabel_configs:\n      - action: labeldrop\n        regex: replica"
    edit(repo_copy / "prometheus" / "generated" / "prometheus.stage.ha.yml", dropped,
         dropped.replace("replica", "instance"))  # fmt: skip
    # another run directory: Compose's merged files are cached by their variables
    checks = {c.name: c.problems for c in lint.long_term_store(repo_copy, tmp_path / "edited")}
    assert checks["long-term store (dev, ha)"] == [
        "victoriametrics: -dedup.minScrapeInterval is not SCRAPE_INTERVAL (1s)",
        "victoriametrics: no -envflag.enable: its entry point's -httpAuth.* are not read",
    ]
    retention = "-retentionPeriod=2d is not longer than the replicas' HA_RETENTION_TIME=4d"
    assert f"victoriametrics: {retention}" in checks["long-term store (prod, ha)"]
    assert any("keeps the replica label" in p for p in checks["long-term store (stage, ha)"])
    assert checks["long-term store (dev)"] == []


def test_compose_status_names_each_replica_peer_and_the_global_view(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stage's HA topology, Compose's answer stubbed (two peers left unpublished)."""
    model = project("stage", Layout("stage", tmp_path), "ha")
    local = {"prometheus": 9090, "prometheus-2": 9091, "alertmanager": 9093, VM: 8428,
             "vmalert": 8880}  # fmt: skip

    def published(_model: Project, _where: object, name: str, port: int) -> str | None:
        assert port == model.exposed_port(name)
        return f"http://127.0.0.1:{local[name]}" if name in local else None

    monkeypatch.setattr(compose, "published", published)
    assert compose.ha_status(model, compose.Target(local=False)) == [
        "prometheus replicas: prometheus http://127.0.0.1:9090, prometheus-2 http://127.0.0.1:9091",
        "alertmanager peers: alertmanager http://127.0.0.1:9093, alertmanager-2 (not published), "
        "alertmanager-3 (not published)",
        "global view: victoriametrics http://127.0.0.1:8428",
        "rules on the global view: vmalert http://127.0.0.1:8880",
    ]


def test_make_up_installs_debians_victoria_metrics() -> None:
    assert debian_binaries()["victoria-metrics"] == "victoria-metrics"
