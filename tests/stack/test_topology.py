"""The topology switch (single or ha): the project model's files and services in each, the HA
topology's generated Prometheus configuration, its records, its native processes, and the
check that HA retention covers every rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from stack import ENVIRONMENTS, ROOT, lint, render
from stack.native_config import Layout, components, gossip_port, port_variables, ports
from stack.project import Project
from stack.promql import lookback, seconds
from stack.services import records
from stack.settings import StackError, environment_settings

from .conftest import edit

SINGLE = {"api", "worker", "postgres", "redis", "postgres-exporter", "redis-exporter",
          "node-exporter", "blackbox-exporter", "prometheus", "alertmanager",
          "grafana"}  # fmt: skip
DEV_ONLY = {"traffic", "receiver"}
REPLICAS = {"prometheus-2", "alertmanager-2", "alertmanager-3"}
PEERS = ("alertmanager", "alertmanager-2", "alertmanager-3")
LONG_TERM = {"victoriametrics"}  # the global view (tests/stack/test_long_term_store.py)
GLOBAL_RULES = {"vmalert"}  # the rules on it (tests/stack/test_vmalert.py)


def project(env: str, tmp_path: Path, topology: str | None = None) -> Project:
    return Project(env, lint.stand_in_run_dir(env, tmp_path), topology=topology)


def generated(env: str, ha: bool) -> dict[str, Any]:
    path = ROOT / "prometheus" / "generated" / render.prometheus_file(env, ha)
    return yaml.safe_load(path.read_text())  # type: ignore[no-any-return]


# ---- the switch and the project model -----------------------------------------------------


def test_dev_runs_single_stage_and_prod_ha_unless_asked(tmp_path: Path) -> None:
    assert project("dev", tmp_path).topology == "single"
    assert project("stage", tmp_path).topology == "ha"
    assert project("prod", tmp_path).topology == "ha"
    assert project("dev", tmp_path, "ha").topology == "ha"
    assert project("prod", tmp_path, "single").topology == "single"
    assert project("dev", tmp_path, "ha").variables()["TOPOLOGY"] == "ha"
    with pytest.raises(StackError, match="unknown TOPOLOGY 'triple'"):
        project("dev", tmp_path, "triple")


def test_the_compose_project_is_the_environments_unless_compose_project_name_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COMPOSE_PROJECT_NAME", raising=False)
    assert project("prod", tmp_path).compose_args()[:2] == ["--project-name", "assistant-prod"]
    monkeypatch.setenv("COMPOSE_PROJECT_NAME", "assistant-it-42")  # the integration suite's
    assert project("prod", tmp_path).compose_args()[:2] == ["--project-name", "assistant-it-42"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_ha_overlays_come_after_the_environments_and_only_in_ha(
    env: str, tmp_path: Path
) -> None:
    single = [f.name for f in project(env, tmp_path, "single").files()]
    ha = [f.name for f in project(env, tmp_path, "ha").files()]
    assert single == ["compose.yaml", f"compose.{env}.yaml"]
    assert ha == [*single, "compose.ha.yaml", f"compose.{env}.ha.yaml"]
    local = [f.name for f in Project(env, tmp_path / env, True, topology="ha").files()]
    assert local == [*ha, "compose.local-images.yaml", "compose.local-images.ha.yaml"]
    local = [f.name for f in Project(env, tmp_path / env, True, topology="single").files()]
    assert local == [*single, "compose.local-images.yaml"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_single_topology_is_one_of_each_and_ha_adds_the_replicas_and_the_store(
    env: str, tmp_path: Path
) -> None:
    expected = SINGLE | (DEV_ONLY if env == "dev" else set())
    assert set(project(env, tmp_path, "single").services()) == expected
    services = project(env, tmp_path, "ha").services()
    assert set(services) == expected | REPLICAS | LONG_TERM | GLOBAL_RULES
    single = project(env, tmp_path, "single").services()
    assert single["alertmanager"]["command"].count("--cluster.listen-address=") == 1
    assert "--enable-feature=expand-external-labels" not in single["prometheus"]["command"]


def test_every_prometheus_keeps_exemplars_in_both_topologies(tmp_path: Path) -> None:
    # the API's request durations carry trace ids (app_metrics, ASSISTANT_TRACING in dev)
    for topology, names in (("single", ["prometheus"]), ("ha", ["prometheus", "prometheus-2"])):
        services = project("dev", tmp_path, topology).services()
        for name in names:
            assert "--enable-feature=exemplar-storage" in services[name]["command"], name
    assert services["api"]["environment"]["ASSISTANT_TRACING"] == "true"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_only_dev_opens_the_debug_routes_and_the_others_would_refuse_them(
    env: str, tmp_path: Path
) -> None:
    # POST /debug/block (the integration suite's blocked loop): dev's API alone; every
    # environment tells the service which it is, so stage and prod refuse it even if set
    for topology in ("single", "ha"):
        services = project(env, tmp_path, topology).services()
        for name in ("api", "worker"):
            environment = services[name]["environment"]
            assert environment["ASSISTANT_ENVIRONMENT"] == env, (topology, name)
            debug = environment.get("ASSISTANT_DEBUG_ROUTES")
            assert debug == ("true" if env == "dev" and name == "api" else None), (topology, name)


def test_each_replica_keeps_its_own_data(tmp_path: Path) -> None:
    services = project("prod", tmp_path).services()
    mounts = {
        name: {v.split(":")[1]: v.split(":")[0] for v in services[name]["volumes"]}
        for name in ("prometheus", "prometheus-2", *PEERS)
    }
    assert mounts["prometheus"]["/prometheus"] == "prometheus-data"
    assert mounts["prometheus-2"]["/prometheus"] == "prometheus-2-data"
    assert [mounts[p]["/alertmanager"] for p in PEERS] == [f"{p}-data" for p in PEERS]
    config = "/etc/prometheus/generated/prometheus.yml"
    assert mounts["prometheus"][config] == mounts["prometheus-2"][config]
    assert mounts["prometheus"][config].endswith("/prometheus/generated/prometheus.prod.ha.yml")


def test_the_replicas_differ_only_in_their_replica_label_url_and_data(tmp_path: Path) -> None:
    services = project("stage", tmp_path).services()
    first, second = (dict(services[n]) for n in ("prometheus", "prometheus-2"))
    assert first.pop("environment") == {"PROMETHEUS_REPLICA": "prometheus"}
    assert second.pop("environment") == {"PROMETHEUS_REPLICA": "prometheus-2"}
    for service in (first, second):
        service["command"] = [a for a in service["command"] if "external-url" not in a]
        service["volumes"] = sorted(v for v in service["volumes"] if "-data:" not in v)
        service["ports"] = [p.rsplit(":", 2)[-1] for p in service.get("ports", [])]
    assert first == second
    assert f"--storage.tsdb.retention.time={retention('stage')}" in first["command"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_peer_gossips_with_the_other_two(env: str, tmp_path: Path) -> None:
    services = project(env, tmp_path, "ha").services()
    for name in PEERS:
        command = services[name]["command"]
        assert "--cluster.listen-address=0.0.0.0:9094" in command
        peers = {a.split("=", 1)[1] for a in command if a.startswith("--cluster.peer=")}
        assert peers == {f"{p}:9094" for p in PEERS if p != name}
        assert services[name]["expose"] == ["9093", "9094"]
        assert services[name]["secrets"] == services["alertmanager"]["secrets"], name


def retention(env: str) -> str:
    return environment_settings(env)["HA_RETENTION_TIME"]


# ---- the HA Prometheus configuration ----------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_ha_configuration_is_the_single_one_with_only_the_ha_changes(env: str) -> None:
    single, ha = generated(env, False), generated(env, True)
    assert ha["global"]["external_labels"] == {"env": env, "replica": "${PROMETHEUS_REPLICA}"}
    assert ha["alerting"]["alert_relabel_configs"] == [{"action": "labeldrop", "regex": "replica"}]
    (managers,) = ha["alerting"]["alertmanagers"]
    assert managers["static_configs"] == [{"targets": [f"{p}:9093" for p in PEERS]}]
    jobs = {j["job_name"]: j for j in ha["scrape_configs"]}
    assert jobs["prometheus"]["static_configs"] == [
        {"targets": ["prometheus:9090", "prometheus-2:9090"]}
    ]
    assert jobs["alertmanager"]["static_configs"] == [{"targets": [f"{p}:9093" for p in PEERS]}]
    assert [j["job_name"] for j in ha["scrape_configs"]] == [
        *(j["job_name"] for j in single["scrape_configs"]),
        *LONG_TERM,
        *GLOBAL_RULES,
    ]  # in the same order, the long-term store's and vmalert's jobs added
    for job in single["scrape_configs"]:
        if job["job_name"] not in ("prometheus", "alertmanager"):
            assert jobs[job["job_name"]] == job
    changed = ("global", "alerting", "scrape_configs", "remote_write", "rule_files")
    assert {k: v for k, v in ha.items() if k not in changed} == {
        k: v for k, v in single.items() if k not in changed
    }
    assert ha["global"] | {"external_labels": None} == single["global"] | {"external_labels": None}


def test_maps_merge_key_by_key_jobs_by_name_and_other_lists_are_replaced() -> None:
    base = {"a": {"x": 1, "y": 2}, "l": [1, 2], "jobs": [{"job_name": "p", "v": 1},
                                                          {"job_name": "q", "v": 1}]}  # fmt: skip
    change = {"a": {"y": 3}, "l": [3], "jobs": [{"job_name": "q", "v": 2}, {"job_name": "r"}]}
    assert render.merged(base, change) == {
        "a": {"x": 1, "y": 3},
        "l": [3],
        "jobs": [{"job_name": "p", "v": 1}, {"job_name": "q", "v": 2}, {"job_name": "r"}],
    }


# ---- records and the native runtime ------------------------------------------------------


def test_the_replicas_records_run_the_first_ones_package_without_an_image() -> None:
    found = records()
    for replica, first in (("prometheus-2", "prometheus"), ("alertmanager-2", "alertmanager"),
                           ("alertmanager-3", "alertmanager")):  # fmt: skip
        assert found[replica].image is None  # the first one's image: no second pin
        assert (found[replica].package, found[replica].job) == (
            found[first].package,
            found[first].job,
        )
    assert {port_variables()[f"{p} cluster"] for p in PEERS} == {
        "ALERTMANAGER_CLUSTER_PORT", "ALERTMANAGER_2_CLUSTER_PORT", "ALERTMANAGER_3_CLUSTER_PORT"
    }  # fmt: skip


def test_natively_each_replica_and_peer_has_its_own_ports_data_and_reads_one_copy(
    tmp_path: Path,
) -> None:
    where = Layout("dev", tmp_path)
    model = project("dev", tmp_path, "ha")
    local = ports(model, {"ALERTMANAGER_2_CLUSTER_PORT": "19194"})
    assert local["prometheus-2"] == 9091 and local["alertmanager-3"] == 9293
    assert local["alertmanager-2:9094"] == 19194 and local["alertmanager:9094"] == 9094
    made = {c.name: c for c in components(model, where, local, "native_database_url")}
    config = f"--config.file={where.config_dir / 'prometheus.yml'}"
    assert config in made["prometheus"].argv and config in made["prometheus-2"].argv
    assert made["prometheus-2"].env["PROMETHEUS_REPLICA"] == "prometheus-2"
    assert (
        f"--storage.tsdb.path={where.data_dir / 'prometheus-2-data'}" in made["prometheus-2"].argv
    )
    second = made["alertmanager-2"].argv
    assert "--cluster.listen-address=127.0.0.1:19194" in second
    assert "--cluster.advertise-address=127.0.0.1:19194" in second
    assert {a for a in second if a.startswith("--cluster.peer=")} == {
        "--cluster.peer=127.0.0.1:9094", "--cluster.peer=127.0.0.1:9294"
    }  # fmt: skip
    assert f"--storage.path={where.data_dir / 'alertmanager-2-data'}" in second
    assert f"--config.file={where.config_dir / 'alertmanager.yml'}" in second


def test_natively_the_single_topology_has_no_cluster(tmp_path: Path) -> None:
    model = project("dev", tmp_path, "single")
    assert gossip_port(model.services()["alertmanager"]) is None
    local = ports(model, {})
    listeners = {f"{n}:{model.metrics_port(n)}" for n in model.services() if model.metrics_port(n)}
    assert not [k for k in local if ":" in k and k not in listeners]  # no gossip port
    made = {c.name: c for c in components(model, Layout("dev", tmp_path), local, "x")}
    assert "--cluster.listen-address=" in made["alertmanager"].argv
    assert not (REPLICAS | LONG_TERM) & set(made)


# ---- HA retention covers every rule ----------------------------------------------------


def test_durations_and_how_far_back_an_expression_reads() -> None:
    assert seconds("4d") == 4 * 86400 and seconds("1h30m") == 5400 and seconds("500ms") == 0.5
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        seconds("4 days")
    assert lookback("rate(x[5m])") == 300
    assert lookback("sum(rate(x[3d])) / sum(rate(y[1h] offset 1d))") == 4 * 86400
    assert lookback("max_over_time(rate(x[5m])[2h:1m])") == 7200
    assert lookback("up == 0") == 0


def test_ha_retention_must_outlast_the_longest_rule_range(repo_copy: Path, tmp_path: Path) -> None:
    """Of the rules the replicas load: the anomaly baselines (21 d) run in vmalert."""
    (check,) = lint.ha_retention(repo_copy, tmp_path)
    assert check.problems == [] and "(3 d)" in check.name
    env = repo_copy / "compose" / "env"
    edit(env / "prod.env", "HA_RETENTION_TIME=4d", "HA_RETENTION_TIME=3d")
    edit(env / "stage.env", "HA_RETENTION_TIME=4d", "HA_RETENTION_TIME=4")
    (check,) = lint.ha_retention(repo_copy, tmp_path)
    assert len(check.problems) == 2
    assert (
        "prod.env: HA_RETENTION_TIME=3d does not cover prometheus/generated/rules/slo.rules.yml"
        in (check.problems[1])
    )
    assert "stage.env: HA_RETENTION_TIME: '4' is not a Prometheus duration" in check.problems[0]


def test_single_retention_must_outlast_the_anomaly_baselines(
    repo_copy: Path, tmp_path: Path
) -> None:
    (check,) = lint.single_retention(repo_copy, tmp_path)
    assert check.problems == [] and "(21.0208 d)" in check.name
    edit(repo_copy / "compose" / "env" / "dev.env", "\nRETENTION_TIME=22d", "\nRETENTION_TIME=2d")
    (check,) = lint.single_retention(repo_copy, tmp_path)
    assert check.problems == [
        "compose/env/dev.env: RETENTION_TIME=2d does not cover prometheus/generated/rules/"
        "anomaly.rules.yml: signal:value:expected, which reads 21.0208 d back (raise it; "
        "RETENTION_SIZE still bounds the disk)"
    ]
