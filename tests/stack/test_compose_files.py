"""The Compose files as Compose reads them: each environment merged and interpolated by
Debian's docker-compose (no engine needed), then checked against the stack's rules."""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from stack import ENVIRONMENTS, ROOT
from stack.lint import stand_in_run_dir
from stack.project import Project
from stack.settings import environment_settings, images

COMPOSE_APT = "apt-get install -y --no-install-recommends docker-compose"
PERSISTENT = {"prometheus": "/prometheus", "grafana": "/var/lib/grafana",
              "alertmanager": "/alertmanager", "postgres": "/var/lib/postgresql/data",
              "redis": "/data"}  # fmt: skip


@functools.cache
def merged(env: str, local: bool = False, **overrides: str) -> dict[str, Any]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail(f"docker-compose not installed: {COMPOSE_APT}", pytrace=False)
    with tempfile.TemporaryDirectory() as tmp:
        project = Project(env, stand_in_run_dir(env, Path(tmp)), local)
        done = subprocess.run(
            [binary, *project.compose_args(), "config"],
            cwd=ROOT, env=project.environ() | overrides, capture_output=True, text=True,
            check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)  # type: ignore[no-any-return]


def services(env: str) -> dict[str, dict[str, Any]]:
    return merged(env)["services"]  # type: ignore[no-any-return]


def volumes(service: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """docker-compose 1.29 prints the short syntax: ``source:target[:mode]``."""
    found = {}
    for entry in service.get("volumes", []):
        source, target, *mode = entry.split(":")
        found[target] = (source, mode[0] if mode else "rw")
    return found


def ports(service: dict[str, Any]) -> list[str]:
    """Host addresses of ``ip:host:container/proto`` entries."""
    return [entry.rsplit(":", 2)[0] for entry in service.get("ports", [])]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_image_is_pinned_by_version_and_digest(env: str) -> None:
    pinned = set(images().values())
    built = {s["image"] for s in services(env).values() if "build" in s}
    for name, service in services(env).items():
        if service["image"] in built and "build" not in service:
            continue  # runs an image another service builds (the traffic generator)
        if "build" in service:
            bases = [v for k, v in service["build"].get("args", {}).items() if k.endswith("_IMAGE")]
            assert bases and set(bases) <= pinned, name
        else:
            assert service["image"] in pinned, f"{name}: {service['image']}"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_service_is_healthchecked_restarted_and_waits_for_healthy(env: str) -> None:
    for name, service in services(env).items():
        assert service["healthcheck"]["test"][0] == "CMD-SHELL", name  # Podman keeps it intact
        assert service["restart"] == "unless-stopped", name
        for dependency, how in service.get("depends_on", {}).items():
            assert how["condition"] == "service_healthy", f"{name} -> {dependency}"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_state_lives_in_named_volumes(env: str) -> None:
    config = merged(env)
    for name, target in PERSISTENT.items():
        source, _ = volumes(services(env)[name])[target]
        assert source in config["volumes"], f"{name}: {target} is not a named volume"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_only_what_must_be_reached_leaves_the_internal_network(env: str) -> None:
    config = merged(env)
    assert config["networks"]["internal"]["internal"] is True
    for name, service in services(env).items():
        assert "internal" in service["networks"], name
        for address in ports(service):
            assert address == "127.0.0.1", f"{name}: {address}"
            outside = [n for n in service["networks"] if not config["networks"][n].get("internal")]
            assert outside, f"{name} publishes a port on the internal net"


def published(env: str, **overrides: str) -> set[str]:
    return {n for n, s in merged(env, **overrides)["services"].items() if s.get("ports")}


def test_prod_publishes_only_grafana_on_loopback_unless_configured() -> None:
    # stage, prod: the HA topology (its replicas, its long-term store, the rules on it)
    replicas = {"prometheus-2", "alertmanager-2", "alertmanager-3", "victoriametrics", "vmalert"}
    assert published("prod") == {"grafana"}
    assert published("stage") == {"grafana", "prometheus", "alertmanager"} | replicas
    assert published("dev") == {"grafana", "prometheus", "alertmanager", "api", "receiver"}
    grafana = merged("prod", GRAFANA_PUBLISH_ADDRESS="0.0.0.0")["services"]["grafana"]
    assert ports(grafana) == ["0.0.0.0"]


def test_dev_alone_runs_the_traffic_generator_and_the_receiver() -> None:
    assert {"traffic", "receiver"} <= services("dev").keys()
    for env in ("stage", "prod"):
        assert not {"traffic", "receiver"} & services(env).keys()


@pytest.mark.parametrize("env", ["stage", "prod"])
def test_stage_and_prod_limit_every_service(env: str) -> None:
    for name, service in services(env).items():
        assert service["cpus"] and service["mem_limit"], name
        # deploy.resources' limits would have to repeat pids_limit (deploy.replicas is fine)
        assert "resources" not in service.get("deploy", {}), name


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_grafana_is_anonymous_in_dev_only(env: str) -> None:
    grafana = services(env)["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == ("true" if env == "dev" else "false")
    assert grafana["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"


def test_node_exporter_sees_the_host_as_its_documentation_asks() -> None:
    node = services("prod")["node-exporter"]
    assert node["pid"] == "host"
    assert "/:/host:ro,rslave" in node["volumes"]
    assert "--path.rootfs=/host" in node["command"]


def test_secrets_are_files_never_environment_values() -> None:
    config = merged("prod")
    for name, secret in config["secrets"].items():
        assert Path(secret["file"]).name == name
    flat = yaml.safe_dump(config)
    for value in ("change-me", "PASSWORD=", "TOKEN="):
        assert value not in flat


def test_redis_keeps_an_append_only_file() -> None:
    command = services("prod")["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"


def secret_names(service: dict[str, Any]) -> set[str]:
    return {s["source"] if isinstance(s, dict) else s for s in service.get("secrets") or []}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_redis_requires_a_user_of_every_client(env: str) -> None:
    """Redis reads its users from the ACL file `make up` renders; every client logs in with a
    secret file, never a password in a command line or an environment value."""
    found = services(env)
    redis = found["redis"]
    command = redis["command"]
    assert command[command.index("--aclfile") + 1] == "/run/secrets/redis_acl"
    assert secret_names(redis) == {"redis_acl", "redis_healthcheck_password"}
    check = " ".join(redis["healthcheck"]["test"])
    assert "--user healthcheck" in check
    assert 'REDISCLI_AUTH="$$(cat /run/secrets/redis_healthcheck_password)"' in check
    for name in ("api", "worker"):
        environment = found[name]["environment"]
        assert "ASSISTANT_REDIS_URL" not in environment
        assert environment["ASSISTANT_REDIS_URL_FILE"] == "/run/secrets/assistant_redis_url"
        assert "assistant_redis_url" in secret_names(found[name])
    exporter = found["redis-exporter"]
    assert exporter["environment"]["REDIS_USER"] == "redis_exporter"
    assert exporter["environment"]["REDIS_ADDR"] == "redis://redis:6379"  # no password in it
    passwords = "/run/secrets/redis_exporter_passwords"
    assert exporter["environment"]["REDIS_PASSWORD_FILE"] == passwords
    assert secret_names(exporter) == {"redis_exporter_passwords"}
    if env == "dev":
        traffic = found["traffic"]
        assert traffic["environment"]["ASSISTANT_TRAFFIC_REDIS_URL_FILE"] == (
            "/run/secrets/assistant_redis_url"
        )
        assert "assistant_redis_url" in secret_names(traffic)
    flat = yaml.safe_dump(found)
    assert "redis://redis:6379/0" not in flat and "REDIS_PASSWORD:" not in flat


def test_the_prometheus_retention_comes_from_the_environment_settings() -> None:
    for env in ENVIRONMENTS:
        settings = environment_settings(env)
        # each replica of the HA topology keeps less of its own
        variable = "HA_RETENTION_TIME" if settings["TOPOLOGY"] == "ha" else "RETENTION_TIME"
        command = services(env)["prometheus"]["command"]
        assert f"--storage.tsdb.retention.time={settings[variable]}" in command


def test_prometheus_loads_the_rules_as_make_generate_stamps_them() -> None:
    for env in ENVIRONMENTS:
        source, mode = volumes(services(env)["prometheus"])["/etc/prometheus/rules"]
        assert (source, mode) == (str(ROOT / "prometheus" / "generated" / "rules"), "ro")


# ---- hardening and web authentication (stack/hardening.py, stack/webauth.py) ---------------

AUTHENTICATED = ("prometheus", "alertmanager", "node-exporter", "postgres-exporter")


def project(env: str, tmp_path: Path) -> Project:
    return Project(env, stand_in_run_dir(env, tmp_path))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_service_is_read_only_without_capabilities_and_not_root(env: str) -> None:
    for name, service in services(env).items():
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"] and "cap_add" not in service, name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert 0 < service["pids_limit"] <= 512, name
        assert str(service["user"]).split(":")[0] not in ("0", "root"), name


def test_postgres_and_redis_start_as_their_own_users_with_their_socket_in_a_volume() -> None:
    prod = services("prod")
    assert (prod["postgres"]["user"], prod["redis"]["user"]) == ("postgres", "redis")
    source, _ = volumes(prod["postgres"])["/run/postgresql"]
    assert source in merged("prod")["volumes"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_app_is_not_the_database_superuser_and_every_connection_authenticates(
    env: str,
) -> None:
    """Issue 14, findings 3 and 1: the image's superuser is postgres, with its own secret; the
    app's URL names its own role; initdb gets scram-sha-256 for the socket and TCP; the roles
    are applied at the first start and on every later one; the socket is its user's alone."""
    postgres = services(env)["postgres"]
    environment = postgres["environment"]
    assert environment["POSTGRES_USER"] == "postgres"
    assert environment["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert environment["POSTGRES_INITDB_ARGS"].split() == [
        "--auth-local=scram-sha-256", "--auth-host=scram-sha-256"
    ]  # fmt: skip
    assert environment["POSTGRES_HOST_AUTH_METHOD"] == "scram-sha-256"
    assert "trust" not in str(postgres)
    assert postgres["entrypoint"][0] == "/usr/local/bin/stack-entrypoint.sh"
    assert postgres["command"] == ["postgres", "-c", "unix_socket_permissions=0700"]
    source, _ = volumes(postgres)["/docker-entrypoint-initdb.d/10-roles.sh"]
    assert source.endswith("postgres/initdb-roles.sh")
    names = {s["source"] if isinstance(s, dict) else s for s in postgres["secrets"]}
    assert names == {"postgres_password", "postgres_roles"}  # no other role's password
    for app in ("api", "worker"):
        assert "assistant_database_url" in str(services(env)[app]["secrets"])
        assert "postgres_password" not in str(services(env)[app]["secrets"])


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_monitoring_components_read_the_web_configuration_make_up_writes(
    env: str, tmp_path: Path
) -> None:
    model = project(env, tmp_path)
    found = model.services()
    for name in AUTHENTICATED:
        service = found[name]
        [flag] = [a for a in service["command"] if a.startswith("--web.config.file=")]
        source, _ = volumes(service)[flag.split("=", 1)[1]]
        assert source == str(model.run_dir / "web.yml"), name
        secret = model.healthcheck_secret(name)
        assert secret == "/run/secrets/monitoring_authorization", name
        assert "monitoring_authorization" in [s["source"] for s in service["secrets"]], name
    assert all("--web.enable-lifecycle" not in (s.get("command") or []) for s in found.values())
    users = (yaml.safe_load((model.run_dir / "web.yml").read_text()) or {}).get("basic_auth_users")
    assert (list(users or {}) == ["monitoring"]) == (env != "dev")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_prometheus_and_grafana_send_the_monitoring_user(env: str) -> None:
    generated = ROOT / "prometheus" / "generated" / f"prometheus.{env}.yml"
    config = yaml.safe_load(generated.read_text())
    user = {"username": "monitoring", "password_file": "/run/secrets/monitoring_password"}
    assert config["alerting"]["alertmanagers"][0]["basic_auth"] == user
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    for job in ("prometheus", "alertmanager", "node", "postgres"):
        assert jobs[job]["basic_auth"] == user, job
    source = ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
    [datasource] = yaml.safe_load(source.read_text())["datasources"]
    assert datasource["basicAuth"] is True and datasource["basicAuthUser"] == "monitoring"
    password = datasource["secureJsonData"]["basicAuthPassword"]
    assert password == "$__file{/run/secrets/monitoring_password}"
    grafana = services(env)["grafana"]
    assert "monitoring_password" in [s["source"] for s in grafana["secrets"]]
