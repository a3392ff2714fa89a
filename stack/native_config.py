"""What the native runtime runs, derived from the Compose files.

Each Compose service becomes a local process with the service's own command, environment,
env_file, bind mounts and secrets: container paths become the files they mount (named volumes
become data directories), ``service:port`` addresses become ``127.0.0.1:<native port>``. Only
what a process needs to run outside a container is added here: the binary (Debian's name), the
address it listens on, and where its data lives. Prometheus' and Alertmanager's configurations
are the environment's own, with the same substitutions.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import ROOT, packages, rules
from .lint import compose_variables
from .packages import RUNTIME_BINARIES
from .processes import http_ok, redis_ping
from .settings import COMPOSE_DIR, StackError, read_env_file

# service: (variable that overrides its local port, default); the defaults are the usual ones
PORTS = {
    "postgres": ("POSTGRES_PORT", 5432),
    "redis": ("REDIS_PORT", 6379),
    "receiver": ("RECEIVER_PORT", 9095),
    "alertmanager": ("ALERTMANAGER_PORT", 9093),
    "node-exporter": ("NODE_EXPORTER_PORT", 9100),
    "postgres-exporter": ("POSTGRES_EXPORTER_PORT", 9187),
    "redis-exporter": ("REDIS_EXPORTER_PORT", 9121),
    "api": ("API_PORT", 8000),
    "worker": ("WORKER_PORT", 8001),
    "prometheus": ("PROMETHEUS_PORT", 9090),
    "grafana": ("GRAFANA_PORT", 3000),
}
# the port each service listens on inside its container (the Compose files' addresses)
CONTAINER_PORTS = {
    "postgres": 5432,
    "redis": 6379,
    "receiver": 9095,
    "alertmanager": 9093,
    "node-exporter": 9100,
    "postgres-exporter": 9187,
    "redis-exporter": 9121,
    "api": 8000,
    "worker": 8000,
    "prometheus": 9090,
    "grafana": 3000,
}
GRAFANA_BINARIES = ("grafana-server", "grafana")
# PostgreSQL's data when its user cannot reach the run root (Layout.postgres_dir); Debian's
# postgresql package makes /var/lib/postgresql the postgres user's home
POSTGRES_HOME_DATA = Path("/var/lib/postgresql/personal-assistant-monitoring")
# start order: dependencies first; the traffic generator last
ORDER = [
    "postgres",
    "redis",
    "receiver",
    "alertmanager",
    "node-exporter",
    "postgres-exporter",
    "redis-exporter",
    "api",
    "worker",
    "grafana",
    "prometheus",
    "traffic",
]
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


@dataclass
class Component:
    name: str
    argv: list[str]
    env: dict[str, str]
    port: int | None
    probe: Callable[[], bool]
    url: str | None = None
    user: str | None = None
    stop_signal: int = signal.SIGTERM
    job: str | None = None  # the Prometheus job that scrapes it
    data: list[Path] = field(default_factory=list)
    first_start: bool = False  # PostgreSQL: initdb just ran, bootstrap once it answers


def unreachable_by_others(directory: Path) -> Path | None:
    """The first existing directory at or above ``directory`` that other users cannot
    traverse, or None."""
    for parent in [directory, *directory.parents]:
        if parent.exists() and not parent.stat().st_mode & 0o001:
            return parent
    return None


@dataclass
class Layout:
    """Where one environment's native stack keeps things (under .run/ or STACK_RUN_ROOT)."""

    env: str
    runs: Path

    @property
    def run_dir(self) -> Path:  # secrets/, alertmanager.yml (secrets.prepare)
        return self.runs / self.env

    @property
    def config_dir(self) -> Path:
        return self.runs / self.env / "native"

    @property
    def data_dir(self) -> Path:
        return self.runs / "data" / self.env

    @property
    def postgres_dir(self) -> Path:
        """PostgreSQL's data and socket. Beside the other data, unless its user (postgres,
        when root runs the stack) cannot get there, as in a checkout under /root (0700): then
        in that user's home, one folder per run root and environment."""
        if os.geteuid() != 0 or unreachable_by_others(self.data_dir) is None:
            return self.data_dir
        key = hashlib.sha256(str(self.runs.resolve()).encode()).hexdigest()[:12]
        return POSTGRES_HOME_DATA / key / self.env

    @property
    def log_dir(self) -> Path:
        return self.runs / "logs" / self.env

    @property
    def state_file(self) -> Path:
        return self.runs / "native-state.json"


def ports(environ: Mapping[str, str] = os.environ) -> dict[str, int]:
    found = {}
    for service, (variable, default) in PORTS.items():
        raw = environ.get(variable, str(default))
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            raise StackError(f"{variable}={raw!r} is not a port number")
        found[service] = int(raw)
    clashes = {p for p in found.values() if list(found.values()).count(p) > 1}
    if clashes:
        raise StackError(f"two services on one port: {sorted(clashes)} (see *_PORT variables)")
    return found


# ---- reading the Compose files -------------------------------------------------------


def interpolate(value: Any, variables: Mapping[str, str]) -> Any:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` in every string."""
    if isinstance(value, dict):
        return {k: interpolate(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, variables) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, kind, argument = match[1], match[2], match[3]
        current = variables.get(name)
        if kind in (":-", "-") and not current:
            return argument or ""
        if kind in (":?", "?") and not current:
            raise StackError(f"Compose variable {name}: {argument}")
        return current or ""

    return _VARIABLE.sub(one, value)


def _merge(base: Any, overlay: Any) -> Any:
    """An overlay file onto the base, as Compose does for the keys used here."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = dict(base)
        for key, value in overlay.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    return overlay


def compose_services(env: str, run_dir: Path, root: Path = ROOT) -> dict[str, dict[str, Any]]:
    """The services of compose.yaml + compose.<env>.yaml, merged and interpolated."""
    variables = {**os.environ, **compose_variables(env, run_dir)}
    merged: dict[str, Any] = {}
    for name in ("compose.yaml", f"compose.{env}.yaml"):
        merged = _merge(merged, yaml.safe_load((root / "compose" / name).read_text()))
    return interpolate(merged["services"], variables)  # type: ignore[no-any-return]


# ---- making a service local ------------------------------------------------------------


def localize(text: str, local_ports: Mapping[str, int]) -> str:
    """``service:container_port`` (and Prometheus' ``localhost:9090``) as ``127.0.0.1:port``."""
    names = "|".join(sorted(map(re.escape, CONTAINER_PORTS), key=len, reverse=True))

    def one(match: re.Match[str]) -> str:
        service, port = match[1], int(match[2])
        if CONTAINER_PORTS.get(service) != port:
            raise StackError(f"{match[0]}: no such service port in the Compose files")
        return f"127.0.0.1:{local_ports[service]}"

    text = re.sub(rf"(?<![\w.-])({names}):(\d+)\b", one, text)
    return text.replace("localhost:9090", f"127.0.0.1:{local_ports['prometheus']}")


def path_map(service: dict[str, Any], layout: Layout) -> dict[str, str]:
    """Container path -> local path: bind mounts, named volumes (data dirs), secrets."""
    mapping = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            local = (COMPOSE_DIR / source).resolve() if source.startswith(".") else Path(source)
        else:
            local = layout.data_dir / source
        mapping[target] = str(local)
    for secret in service.get("secrets", []):
        mapping[f"/run/secrets/{secret}"] = str(layout.run_dir / "secrets" / secret)
    return mapping


def translate(value: str, mapping: Mapping[str, str], local_ports: Mapping[str, int]) -> str:
    for container, local in sorted(mapping.items(), key=lambda kv: -len(kv[0])):
        if value == container or value.startswith(container + "/") or f"={container}" in value:
            value = value.replace(container, local, 1)
    return localize(value, local_ports)


def set_flag(argv: list[str], flag: str, value: str) -> list[str]:
    """``argv`` with ``flag=value`` (replacing ``flag=...`` or ``flag value``), or appended."""
    out, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg.startswith(flag + "="):
            continue
        if arg == flag and i + 1 < len(argv):
            skip = True
            continue
        out.append(arg)
    return [*out, f"{flag}={value}"]


def binary(service: str) -> str:
    name, package = RUNTIME_BINARIES[service]
    found = shutil.which(name)
    if found is None:
        raise StackError(f"{name} is not installed (Debian package {package})")
    return found


def postgres_bin(name: str) -> str:
    found = packages.postgres_bin(name)
    if found is None:
        raise StackError(f"PostgreSQL's {name} is not installed (Debian package postgresql)")
    return found


def grafana_binary() -> str | None:
    return next((b for b in map(shutil.which, GRAFANA_BINARIES) if b), None)


def components(
    env: str, layout: Layout, local_ports: Mapping[str, int], database_url: str
) -> list[Component]:
    """Every service of the environment as a local process, in start order (Grafana only
    when a binary is installed)."""
    services = compose_services(env, layout.run_dir)
    made = {}
    for name in ORDER:
        if name not in services or (name == "grafana" and grafana_binary() is None):
            continue
        service = services[name]
        mapping = path_map(service, layout)
        env_vars = {}
        for env_file in service.get("env_file", []):
            env_vars |= read_env_file((COMPOSE_DIR / env_file).resolve())
        env_vars |= {k: str(v) for k, v in (service.get("environment") or {}).items()}
        env_vars = {k: translate(v, mapping, local_ports) for k, v in env_vars.items()}
        command = [translate(str(a), mapping, local_ports) for a in service.get("command", [])]
        made[name] = _local(name, command, env_vars, layout, local_ports, database_url)
    return list(made.values())


def _local(
    name: str,
    command: list[str],
    env_vars: dict[str, str],
    layout: Layout,
    local_ports: Mapping[str, int],
    database_url: str,
) -> Component:
    port = local_ports.get(name)
    address = f"127.0.0.1:{port}"
    url = f"http://{address}"
    data = layout.data_dir / f"{name}-data"  # the Compose file's named volume
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "ASSISTANT_"))}
    environ = base_env | env_vars
    python = sys.executable
    if name == "postgres":
        data = layout.postgres_dir / f"{name}-data"
        sockets = layout.postgres_dir / "postgres-socket"
        argv = [
            postgres_bin("postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(sockets),
            "-c",
            "listen_addresses=127.0.0.1",
        ]
        probe = _pg_ready(port)  # type: ignore[arg-type]
        return Component(
            name,
            argv,
            base_env,
            port,
            probe,
            f"postgresql://{address}",
            user="postgres" if os.geteuid() == 0 else None,  # it refuses to run as root
            stop_signal=signal.SIGINT,
            data=[data, sockets],
        )
    if name == "redis":
        argv = [
            binary("redis"),
            *command[1:],
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data),
            "--daemonize",
            "no",
        ]
        return Component(
            name,
            argv,
            environ,
            port,
            lambda: redis_ping(port),  # type: ignore[arg-type]
            f"redis://{address}",
            data=[data],
        )
    if name in ("api", "worker"):
        environ.pop("ASSISTANT_DATABASE_URL_FILE", None)  # its URL names the container host
        environ |= {
            "ASSISTANT_DATABASE_URL": database_url,
            "ASSISTANT_HOST": "127.0.0.1",
            "ASSISTANT_PORT": str(port),
        }
        return Component(
            name,
            [python, "-m", "assistant"],
            environ,
            port,
            lambda: http_ok(f"{url}/health/overall", any_status=True),
            url,
            job="personal_assistant_api",
        )
    if name == "traffic":
        return Component(
            name, [python if a == "python" else a for a in command], environ, None, lambda: True
        )
    if name == "receiver":
        argv = [python if a == "python" else a for a in command]
        argv = _set_pair(_set_pair(argv, "--host", "127.0.0.1"), "--port", str(port))
        Path(argv[argv.index("--log") + 1]).parent.mkdir(parents=True, exist_ok=True)
        return Component(name, argv, environ, port, lambda: http_ok(f"{url}/-/healthy"), url)
    if name in ("alertmanager", "prometheus"):
        # the Compose command, with the local copy of its configuration and local addresses
        argv = [binary(name), *command]
        argv = set_flag(argv, "--config.file", str(layout.config_dir / f"{name}.yml"))
        argv = set_flag(argv, "--web.listen-address", address)
        argv = set_flag(argv, "--web.external-url", url)
        return Component(
            name,
            argv,
            environ,
            port,
            lambda: http_ok(f"{url}/-/ready"),
            url,
            job=name,
            data=[layout.data_dir / f"{name}-data"],
        )
    if name == "grafana":
        grafana = grafana_binary() or "grafana"
        argv = [
            grafana,
            *([] if grafana.endswith("-server") else ["server"]),
            "--homepath",
            "/usr/share/grafana",
        ]
        environ |= {
            "GF_SERVER_HTTP_ADDR": "127.0.0.1",
            "GF_SERVER_HTTP_PORT": str(port),
            "GF_PATHS_DATA": str(layout.data_dir / "grafana-data"),
            "GF_PATHS_PROVISIONING": str(layout.config_dir / "grafana-provisioning"),
        }
        return Component(
            name,
            argv,
            environ,
            port,
            lambda: http_ok(f"{url}/api/health"),
            url,
            job="grafana",
            data=[layout.data_dir / "grafana-data"],
        )
    # the exporters: the Compose command, plus the address to listen on
    flag = "-web.listen-address" if name == "redis-exporter" else "--web.listen-address"
    argv = set_flag([binary(name), *command], flag, address)
    job = {"node-exporter": "node", "postgres-exporter": "postgres", "redis-exporter": "redis"}
    return Component(
        name, argv, environ, port, lambda: http_ok(f"{url}/metrics"), url, job=job[name]
    )


def _set_pair(argv: list[str], flag: str, value: str) -> list[str]:
    argv = list(argv)
    argv[argv.index(flag) + 1] = value
    return argv


def _pg_ready(port: int) -> Callable[[], bool]:
    import subprocess

    def probe() -> bool:
        done = subprocess.run(
            [
                postgres_bin("pg_isready"),
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
            ],
            capture_output=True,
            timeout=5,
            check=False,
        )
        return done.returncode == 0

    return probe


# ---- configuration files ---------------------------------------------------------------


def prometheus_config(
    env: str, layout: Layout, local_ports: Mapping[str, int], running: set[str], root: Path = ROOT
) -> str:
    """The environment's generated configuration with local addresses and paths; jobs of
    services that do not run natively (Grafana without a binary) left out."""
    config = yaml.safe_load(
        (root / "prometheus" / "generated" / f"prometheus.{env}.yml").read_text()
    )
    config["rule_files"] = [str(root / rules.LOADED / Path(f).name) for f in config["rule_files"]]
    config["alerting"] = yaml.safe_load(localize(yaml.safe_dump(config["alerting"]), local_ports))
    jobs = []
    for job in config["scrape_configs"]:
        targets = [t for c in job.get("static_configs", []) for t in c["targets"]]
        services = {t.split(":")[0] for t in targets if t.split(":")[0] in CONTAINER_PORTS}
        if "localhost" in {t.split(":")[0] for t in targets}:
            services.add("prometheus")
        if not services <= running:
            continue
        text = yaml.safe_dump(job).replace("/run/secrets/", f"{layout.run_dir / 'secrets'}/")
        jobs.append(yaml.safe_load(localize(text, local_ports)))
    config["scrape_configs"] = jobs
    return "# The native runtime's copy: do not edit (stack/native_config.py).\n" + yaml.safe_dump(
        config, sort_keys=False
    )


def alertmanager_config(layout: Layout, local_ports: Mapping[str, int], root: Path = ROOT) -> str:
    text = (layout.run_dir / "alertmanager.yml").read_text()
    text = text.replace("/etc/alertmanager/templates/", f"{root}/alertmanager/templates/")
    text = text.replace("/run/secrets/", f"{layout.run_dir / 'secrets'}/")
    return localize(text, local_ports)


def grafana_provisioning(layout: Layout, local_ports: Mapping[str, int], root: Path = ROOT) -> None:
    """A copy of grafana/provisioning with local addresses and the dashboards' real path."""
    target = layout.config_dir / "grafana-provisioning"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(root / "grafana" / "provisioning", target)
    dashboards = str(root / "grafana" / "dashboards")
    for path in target.rglob("*.yml"):
        text = localize(path.read_text(), local_ports)
        path.write_text(text.replace("/var/lib/grafana/dashboards", dashboards))
