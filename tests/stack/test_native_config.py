"""The native runtime's processes come from the Compose files: same commands, environment,
files and secrets; only addresses and paths are local."""

from __future__ import annotations

import http.server
import json
import shutil
import tempfile
import threading
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from stack import ENVIRONMENTS, ROOT
from stack.lint import stand_in_run_dir
from stack.native_config import (
    SAFE_PATH,
    Layout,
    addressed_secrets,
    components,
    localize,
    ports,
    prometheus_config,
    set_flag,
)
from stack.processes import http_probe
from stack.project import Project
from stack.render import prometheus_file
from stack.secrets import EXAMPLE
from stack.services import records
from stack.settings import StackError, read_env_file


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    where = Layout("dev", tmp_path)
    stand_in_run_dir("dev", tmp_path)
    return where


@pytest.fixture
def project(layout: Layout) -> Project:
    return Project("dev", layout.run_dir)


def test_addresses_become_local(project: Project) -> None:
    local = ports(project, {})
    assert localize("http://api:8000/metrics", project, local) == "http://127.0.0.1:8000/metrics"
    assert localize("redis://redis:6379/0", project, local) == "redis://127.0.0.1:6379/0"
    assert localize("worker:8000", project, {**local, "worker": 18001}) == "127.0.0.1:18001"
    uri = localize("postgres:5432/assistant?sslmode=disable", project, local)
    assert uri.startswith("127.0.0.1:5432/")
    with pytest.raises(StackError, match="api:9999: no such service port"):
        localize("http://api:9999", project, local)


def test_flags_are_replaced_or_added() -> None:
    assert set_flag(["--a=1", "--b", "2"], "--b", "3") == ["--a=1", "--b=3"]
    assert set_flag(["--a=1"], "--c", "4") == ["--a=1", "--c=4"]


def test_ports_are_the_exposed_ones_overridable_and_checked(project: Project) -> None:
    local = ports(project, {})
    assert local["prometheus"] == 9090 and local["postgres-exporter"] == 9187
    assert local["worker"] == 8001  # its record: the API has 8000 on this machine
    assert ports(project, {"PROMETHEUS_PORT": "19090"})["prometheus"] == 19090
    with pytest.raises(StackError, match="PROMETHEUS_PORT='x' is not a port"):
        ports(project, {"PROMETHEUS_PORT": "x"})
    with pytest.raises(StackError, match="two services on one port"):
        ports(project, {"API_PORT": "9090"})


@pytest.mark.parametrize("topology", ["single", "ha"])
@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_api_and_worker_expose_a_metrics_listener_their_job_scrapes(
    env: str, topology: str, tmp_path: Path
) -> None:
    """Every environment and topology: the second port each exposes is its metrics
    listener's, which its environment turns on and Prometheus' job scrapes; the healthcheck
    stays on the first."""
    model = Project(env, stand_in_run_dir(env, tmp_path), topology=topology)
    services = model.services()
    config = yaml.safe_load(
        (ROOT / "prometheus" / "generated" / prometheus_file(env, model.ha)).read_text()
    )
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "personal_assistant_api"]
    for name in ("api", "worker"):
        assert model.exposed_ports(name) == [8000, 9464]
        assert model.metrics_port(name) == 9464
        assert services[name]["environment"]["ASSISTANT_METRICS_PORT"] == "9464"
        assert "healthcheck" in services[name]["healthcheck"]["test"][1]  # the API port's
    assert [d["port"] for d in job["dns_sd_configs"]] == [9464]
    assert job["authorization"] == {"credentials_file": "/run/secrets/metrics_token"}
    assert model.metrics_port("prometheus") is None  # one port, no listener


def test_natively_the_metrics_ports_move_with_their_variables(project: Project) -> None:
    local = ports(project, {})
    assert (local["api:9464"], local["worker:9464"]) == (9464, 9465)
    moved = ports(project, {"API_METRICS_PORT": "19464", "WORKER_METRICS_PORT": "19465"})
    assert (moved["api:9464"], moved["worker:9464"]) == (19464, 19465)
    assert localize("api:9464", project, moved) == "127.0.0.1:19464"
    with pytest.raises(StackError, match="two services on one port"):
        ports(project, {"API_METRICS_PORT": "9465"})
    with pytest.raises(StackError, match="replica 9 would listen on 65544: lower API_METRICS"):
        ports(project, {"API_METRICS_PORT": "65464", "API_REPLICAS": "9"})


@pytest.mark.parametrize("topology", ["single", "ha"])
@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_compose_service_has_a_record_and_runs_natively(
    env: str, topology: str, tmp_path: Path
) -> None:
    where = Layout(env, tmp_path)
    stand_in_run_dir(env, tmp_path)
    project = Project(env, where.run_dir, topology=topology)
    services = set(project.services())
    assert services <= set(records())
    local = ports(project, {})
    native = {c.name for c in components(project, where, local, "native_database_url")}
    assert services - native <= {"grafana"}  # Grafana only where a binary is installed
    assert native <= services


def test_every_record_names_a_compose_service_a_job_and_an_image_that_exist(
    layout: Layout,
) -> None:
    import yaml

    from stack import ROOT
    from stack.settings import images

    project = Project("dev", layout.run_dir, topology="ha")  # every service: the replicas too
    services = set(project.services())
    config = yaml.safe_load(
        (ROOT / "prometheus" / "generated" / "prometheus.dev.ha.yml").read_text()
    )
    jobs = {j["job_name"] for j in config["scrape_configs"]}  # the HA topology's: every job
    for name, record in records().items():
        assert name in services, f"[{name}]: no such service in the dev HA Compose files"
        assert record.job is None or record.job in jobs, f"[{name}]: no job {record.job}"
        assert record.image is None or images()[record.image_variable] == record.image, name
        if record.port:
            assert project.exposed_port(name), f"[{name}]: has a port but exposes none"


def test_each_process_gets_the_compose_settings_made_local(
    layout: Layout, project: Project
) -> None:
    local = ports(project, {})
    url_file = str(layout.run_dir / "secrets" / "native_database_url")
    made = {c.name: c for c in components(project, layout, local, url_file)}
    exporter = made["postgres-exporter"]
    uri = "127.0.0.1:5432/assistant?sslmode=disable&connect_timeout=1"
    assert exporter.env["DATA_SOURCE_URI"] == uri
    assert exporter.env["DATA_SOURCE_PASS_FILE"] == str(
        layout.run_dir / "secrets" / "postgres_exporter_password"
    )
    assert any(a.endswith("exporters/postgres/queries.yml") for a in exporter.argv)
    assert "--path.rootfs=/" in made["node-exporter"].argv
    assert made["redis-exporter"].env["REDIS_EXPORTER_INCL_SYSTEM_METRICS"] == "true"
    redis = made["redis"].argv
    assert redis[redis.index("--appendonly") + 1] == "yes"
    assert redis[redis.index("--aclfile") + 1] == str(layout.run_dir / "secrets" / "redis_acl")
    # the files that name Redis's address: the native copies, with its local address
    local_url = str(layout.secrets_dir / "assistant_redis_url")
    assert made["api"].env["ASSISTANT_REDIS_URL_FILE"] == local_url
    assert made["traffic"].env["ASSISTANT_TRAFFIC_REDIS_URL_FILE"] == local_url
    redis_exporter = made["redis-exporter"].env
    assert redis_exporter["REDIS_ADDR"] == "redis://127.0.0.1:6379"
    assert redis_exporter["REDIS_USER"] == "redis_exporter"
    assert redis_exporter["REDIS_PASSWORD_FILE"] == str(
        layout.secrets_dir / "redis_exporter_passwords"
    )
    assert made["api"].env["ASSISTANT_ROLE"] == "api" and made["worker"].port == 8001
    assert made["api"].env["ASSISTANT_DATABASE_URL_FILE"] == url_file
    assert "ASSISTANT_DATABASE_URL" not in made["api"].env
    assert "--storage.tsdb.retention.time=22d" in made["prometheus"].argv
    assert "http://127.0.0.1:8000" in made["traffic"].argv


def test_the_native_copies_of_the_redis_secrets_name_its_local_address(
    layout: Layout, project: Project
) -> None:
    local = ports(project, {"REDIS_PORT": "16379"})
    files = addressed_secrets(layout, local)
    example = read_env_file(EXAMPLE)
    password = quote(example["REDIS_PASSWORD"], safe="")
    url = files[layout.secrets_dir / "assistant_redis_url"]
    assert url == f"redis://assistant:{password}@127.0.0.1:16379/0\n"
    passwords = json.loads(files[layout.secrets_dir / "redis_exporter_passwords"])
    assert passwords == {"redis://127.0.0.1:16379": example["REDIS_EXPORTER_PASSWORD"]}


def test_the_native_prometheus_config_is_the_environments_own(
    layout: Layout, project: Project
) -> None:
    running = {"api", "worker", "postgres-exporter", "redis-exporter", "node-exporter",
               "prometheus", "alertmanager"}  # fmt: skip
    text = prometheus_config(project, layout, ports(project, {}), running)
    for name in ("api:", "worker:", "postgres-exporter:", "alertmanager:", "localhost:"):
        assert name not in text
    assert "job_name: grafana" not in text  # not running: its job is left out
    assert str(layout.run_dir / "secrets" / "metrics_token") in text
    assert "scrape_interval: 1s" in text and "env: dev" in text
    # the rules as `make generate` stamps them, as Compose mounts them
    assert f"- {ROOT}/prometheus/generated/rules/*.rules.yml\n" in text


def test_postgres_data_moves_to_its_users_home_when_the_run_root_is_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from stack import native_config

    monkeypatch.setattr(native_config.os, "geteuid", lambda: 0)
    top = Path(tempfile.mkdtemp(prefix="stack-closed-"))  # /tmp: open to others above it
    top.chmod(0o755)
    closed = top / "root"
    (closed / "monitoring" / ".run").mkdir(parents=True, mode=0o755)
    closed.chmod(0o700)  # like /root on Debian
    layout = Layout("dev", closed / "monitoring" / ".run")
    where = layout.postgres_dir
    assert where.parent.parent == native_config.POSTGRES_HOME_DATA and where.name == "dev"
    assert where == Layout("dev", closed / "monitoring" / ".run").postgres_dir  # stable
    assert Layout("dev", closed / "other" / ".run").postgres_dir != where  # one per run root
    closed.chmod(0o711)
    assert layout.postgres_dir == layout.data_dir
    shutil.rmtree(top)


@pytest.mark.parametrize("env", ["stage", "prod"])
def test_natively_the_monitoring_components_read_the_same_web_configuration(
    env: str, tmp_path: Path
) -> None:
    """Natively too, in stage and prod, Prometheus, Alertmanager and the exporters ask for the
    monitoring user (the web configuration `make up` writes), and Prometheus sends it."""
    where = Layout(env, tmp_path)
    project = Project(env, stand_in_run_dir(env, tmp_path))
    local = ports(project, {})
    made = {c.name: c for c in components(project, where, local, "native_database_url")}
    web = f"--web.config.file={where.run_dir / 'web.yml'}"
    for name in ("prometheus", "alertmanager", "node-exporter", "postgres-exporter"):
        assert web in made[name].argv, name
    assert "basic_auth_users" in (where.run_dir / "web.yml").read_text()
    assert "--web.enable-lifecycle" not in made["prometheus"].argv
    running = set(made) - {"grafana"}
    config = yaml.safe_load(prometheus_config(project, where, local, running))
    password = str(where.run_dir / "secrets" / "monitoring_password")
    assert config["alerting"]["alertmanagers"][0]["basic_auth"]["password_file"] == password
    sent = {j["job_name"]: j.get("basic_auth", {}) for j in config["scrape_configs"]}
    for job in ("prometheus", "alertmanager", "node", "postgres"):
        assert sent[job] == {"username": "monitoring", "password_file": password}, job


def test_a_probe_sends_the_healthchecks_authorization(tmp_path: Path) -> None:
    """The native readiness probe sends what the Compose healthcheck sends (its secret)."""
    expected = "Basic bW9uaXRvcmluZzpzM2NyZXQ="

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.headers.get("Authorization") == expected else 401)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/-/ready"
        (tmp_path / "authorization").write_text(expected + "\n")
        assert http_probe(url, str(tmp_path / "authorization"))()
        assert not http_probe(url)()
    finally:
        server.shutdown()
        server.server_close()


def test_each_process_gets_a_minimal_environment_not_the_callers(
    layout: Layout, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PATH, HOME, LANG (TZ, LC_ALL when set) and the component's own settings: nothing else
    of the caller's environment (a secret it holds, a sentinel) reaches a process."""
    monkeypatch.setenv("STACK_TEST_SENTINEL", "caller-only")
    monkeypatch.setenv("POSTGRES_PASSWORD", "caller-secret")
    monkeypatch.setenv("TZ", "Europe/Paris")
    made = components(project, layout, ports(project, {}), "native_database_url")
    for component in made:
        assert "STACK_TEST_SENTINEL" not in component.env, component.name
        assert "caller-secret" not in " ".join([*component.env.values(), *component.argv])
        assert component.env["PATH"] == SAFE_PATH and component.env["TZ"] == "Europe/Paris"
    api = next(c for c in made if c.name == "api")
    assert api.argv[1:] == ["-S", "-m", "assistant"]
    assert api.env["PYTHONPATH"].endswith(f":{ROOT}")
