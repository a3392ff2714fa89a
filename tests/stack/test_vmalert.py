"""The HA topology's rules on the global view, vmalert: the anomaly baselines evaluated once
against VictoriaMetrics instead of twice on the replicas (which no longer load them), written
back to it, every Alertmanager peer notified with the replicas' labels; the same on both
runtimes; the single topology unchanged (its Prometheus evaluates every rule file)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from stack import ENVIRONMENTS, ROOT, lint, vmalert
from stack.native_config import Layout, components, ports, prometheus_config
from stack.rules import LOADED, rule_files
from stack.services import records

from .test_long_term_store import generated, project

GLOBAL = ["anomaly.rules.yml"]  # what vmalert evaluates
PEERS = ["http://alertmanager:9093", "http://alertmanager-2:9093", "http://alertmanager-3:9093"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_each_rule_file_is_evaluated_once_in_either_topology(env: str, tmp_path: Path) -> None:
    everything = [p.name for p in rule_files(ROOT, LOADED)]
    assert vmalert.loaded(generated(env, ha=False), ROOT) == everything
    replicas = vmalert.loaded(generated(env, ha=True), ROOT)
    assert replicas == [n for n in everything if n not in GLOBAL]
    where = Layout(env, tmp_path)
    assert vmalert.SERVICE not in project(env, where, "single").services()
    model = project(env, where, "ha")
    assert vmalert.evaluated(model.services()[vmalert.SERVICE]) == GLOBAL
    for topology in ("single", "ha"):
        config = generated(env, topology == "ha")
        assert vmalert.problems(project(env, where, topology), config) == [], topology


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_it_reads_and_writes_the_store_and_notifies_every_peer_with_the_replicas_labels(
    env: str, tmp_path: Path
) -> None:
    given = vmalert.flag_values(project(env, Layout(env, tmp_path), "ha").services()["vmalert"])
    for client in ("-datasource", "-remoteWrite", "-remoteRead"):
        assert given[f"{client}.url"] == ["http://victoriametrics:8428"]
        assert given[f"{client}.basicAuth.username"] == ["monitoring"]
    assert given["-notifier.url"] == PEERS
    assert given["-notifier.basicAuth.passwordFile"] == ["/run/secrets/monitoring_password"] * 3
    assert given["-external.label"] == [f"env={env}"]
    labels = generated(env, ha=True)["global"]["external_labels"]
    assert labels == {"env": env, "replica": "${PROMETHEUS_REPLICA}"}
    assert given["-evaluationInterval"] == [str(generated(env, ha=True)["global"]
                                               ["evaluation_interval"])]  # fmt: skip


def test_its_record_runs_debians_binary_and_its_local_image_is_built_from_debian() -> None:
    record = records()["vmalert"]
    assert (record.runs, record.package, record.binary, record.job) == (
        "binary", "victoria-metrics", "vmalert", "vmalert",
    )  # fmt: skip
    containerfile = (ROOT / "images" / "vmalert" / "Containerfile").read_text()
    assert "victoria-metrics" in containerfile and "/vmalert-prod" in containerfile


def test_natively_it_runs_the_entry_point_and_reaches_every_service_locally(
    tmp_path: Path,
) -> None:
    where = Layout("dev", tmp_path)
    model = project("dev", where, "ha")
    local = ports(model, {"VICTORIAMETRICS_PORT": "18428", "VMALERT_PORT": "18880"})
    made = {c.name: c for c in components(model, where, local, "x")}["vmalert"]
    assert made.argv[:3] == ["/bin/sh", str(ROOT / "victoriametrics" / "entrypoint.sh"),
                             shutil.which("vmalert") or "vmalert"]  # fmt: skip
    assert f"-rule={ROOT / LOADED / 'anomaly.rules.yml'}" in made.argv
    assert "-datasource.url=http://127.0.0.1:18428" in made.argv
    assert "-remoteWrite.url=http://127.0.0.1:18428" in made.argv
    notified = [a for a in made.argv if a.startswith("-notifier.url=")]
    assert notified == [f"-notifier.url=http://127.0.0.1:{p}" for p in (9093, 9193, 9293)]
    secret = str(where.run_dir / "secrets" / "monitoring_password")
    assert f"-datasource.basicAuth.passwordFile={secret}" in made.argv
    assert made.argv[-1] == "-httpListenAddr=127.0.0.1:18880" and made.job == "vmalert"
    assert made.url == "http://127.0.0.1:18880"
    config = yaml.safe_load(prometheus_config(model, where, local, set(model.services())))
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs["vmalert"]["static_configs"] == [{"targets": ["127.0.0.1:18880"]}]
    assert not any(f.endswith("anomaly.rules.yml") for f in config["rule_files"])


@pytest.mark.skipif(shutil.which("vmalert") is None, reason="no vmalert (victoria-metrics)")
def test_a_rule_its_parser_refuses_fails_the_dry_run(repo_copy: Path, tmp_path: Path) -> None:
    rules = repo_copy / LOADED / "anomaly.rules.yml"
    rules.write_text(rules.read_text().replace("vector(0.1)", "vector(0.1", 1))
    *_, dry_run = lint.global_rules(repo_copy, tmp_path)
    assert dry_run.name == "vmalert -dryRun (anomaly.rules.yml)"
    assert any("vector(0.1" in p and "exit" in p for p in dry_run.problems), dry_run.problems
