"""What the native runtime runs, derived from the project model (stack/project.py: the
Compose files as Compose merges them) and the service records (stack/services.toml).

Each Compose service becomes a local process with the service's own command, environment,
mounts and secrets: container paths become the files they mount (named volumes become data
directories), ``service:port`` addresses become ``127.0.0.1:<native port>``. What a process
needs outside a container comes from its record: Debian's binary, the flag that sets its
listen address, its port variable and Prometheus job. The start order is Compose's
``depends_on``; readiness is the service's own HTTP healthcheck where it has one.

A replicated service (API_REPLICAS, ...; stack/project.py) runs as that many processes,
``api``, ``api-2``, ``api-3``, each on its own port (REPLICA_STRIDE apart), and Prometheus
finds them in a file (``file_sd_configs``) where Compose's DNS discovery finds containers.
A service with a metrics listener (its record's ``metrics_port``: the second port it exposes,
9464) has a second local port per replica, REPLICA_STRIDE apart too.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import ROOT, redis_acl, rules
from .processes import http_ok, http_probe, redis_ping
from .project import Project, job_hosts
from .render import prometheus_file
from .services import Service, records
from .settings import StackError
from .yamlfile import load_yaml

GRAFANA_BINARIES = ("grafana-server", "grafana")
GRAFANA_PROVISIONING = "/etc/grafana/provisioning"  # where Compose mounts grafana/provisioning
# the native copy of its configuration with local addresses (config_dir) each service of these
# Debian packages reads (every replica of the HA topology the same one), written by native.up
REWRITTEN = {"prometheus": "prometheus.yml", "prometheus-alertmanager": "alertmanager.yml"}
# PostgreSQL's data when its user cannot reach the run root (Layout.postgres_dir); Debian's
# postgresql package makes /var/lib/postgresql the postgres user's home
POSTGRES_HOME_DATA = Path("/var/lib/postgresql/personal-assistant-monitoring")
# replica k of a service listens on its port + REPLICA_STRIDE * (k - 1): the API's 8000,
# 8010, 8020 beside the worker's 8001, 8011, 8021 (MAX_REPLICAS of each, 9, never meet); its
# metrics listener likewise: the API's 9464, 9474, ... beside the worker's 9465, 9475, ...
REPLICA_STRIDE = 10
# Prometheus' folder of other hosts' targets (compose.yaml mounts prometheus/targets there)
TARGETS_MOUNT = "/etc/prometheus/targets/"


@dataclass
class Component:
    name: str  # its service's, or a replica's (replica_name)
    argv: list[str]
    env: dict[str, str]
    port: int | None
    probe: Callable[[], bool]
    url: str | None = None
    user: str | None = None
    stop_signal: int = signal.SIGTERM
    job: str | None = None  # the Prometheus job that scrapes it
    data: list[Path] = field(default_factory=list)
    gossip: int | None = None  # its cluster's port (an Alertmanager peer of the HA topology)
    metrics: int | None = None  # its metrics listener's port (the API's and worker's)
    service: str = ""  # the Compose service it runs (a replica's: api for api-2)

    def __post_init__(self) -> None:
        self.service = self.service or self.name


def replica_name(service: str, number: int) -> str:
    """The first replica is the service's name, the others are numbered: api, api-2, api-3."""
    return service if number == 1 else f"{service}-{number}"


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
    def secrets_dir(self) -> Path:
        """The native copies of the secrets that name an address (redis_acl.ADDRESSED)."""
        return self.config_dir / "secrets"

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

    @property
    def targets_dir(self) -> Path:
        """The files Prometheus discovers the replicas' targets in (discovered_targets)."""
        return self.config_dir / "targets"


GOSSIP_LISTEN = "--cluster.listen-address"  # Alertmanager's cluster; empty: no cluster
GOSSIP_ADVERTISE = "--cluster.advertise-address"
CLUSTER = " cluster"  # port_variables' key of a service's gossip port: "<service> cluster"
METRICS = " metrics"  # and of its metrics listener's: "<service> metrics"


def port_variables() -> dict[str, str]:
    """The variable that moves each service's port natively (``API_PORT``, ...), each
    gossip port (``"alertmanager cluster": "ALERTMANAGER_CLUSTER_PORT"``) and each metrics
    listener's (``"api metrics": "API_METRICS_PORT"``)."""
    found = {name: r.port for name, r in records().items() if r.port}
    for name, r in records().items():
        found |= {name + CLUSTER: r.cluster_port} if r.cluster_port else {}
        found |= {name + METRICS: r.metrics_port} if r.metrics_port else {}
    return found


def gossip_port(service: Mapping[str, Any]) -> int | None:
    """The port its Compose command gossips on (``--cluster.listen-address=0.0.0.0:9094``), or
    None where it has no cluster (the single topology: an empty address)."""
    for arg in service.get("command") or []:
        flag, _, value = str(arg).partition("=")
        if flag == GOSSIP_LISTEN and value.rpartition(":")[2].isdigit():
            return int(value.rpartition(":")[2])
    return None


def ports(project: Project, environ: Mapping[str, str] = os.environ) -> dict[str, int]:
    """Each service's port on 127.0.0.1: its variable, else its record's local port, else the
    port it exposes; its other replicas' under their names (``api-2``), REPLICA_STRIDE
    apart. A gossip port, and a metrics listener's port (each replica's), under
    ``"<service or replica>:<its port in Compose>"`` (``api-2:9464``)."""
    found = {}
    services = project.services()
    for key, variable in port_variables().items():
        name = key.removesuffix(CLUSTER).removesuffix(METRICS)
        if name not in services:
            continue
        record = records()[name]
        if key == name:
            default = record.local_port or project.exposed_port(name)
        else:
            cluster = key.endswith(CLUSTER)
            inside = gossip_port(services[name]) if cluster else project.metrics_port(name)
            if inside is None:
                continue
            local = record.local_cluster_port if cluster else record.local_metrics_port
            key, default = f"{name}:{inside}", local or inside
        raw = environ.get(variable, str(default))
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            raise StackError(f"{variable}={raw!r} is not a port number")
        found[key] = int(raw)
    for name, count in project.replicas(environ).items():
        record, metrics = records()[name], project.metrics_port(name)
        # "": its own port; ":9464": its metrics listener's
        suffixes = {"": record.port} | ({f":{metrics}": record.metrics_port} if metrics else {})
        for suffix, variable in suffixes.items():
            for number in range(2, count + 1) if name + suffix in found else ():
                port = found[name + suffix] + REPLICA_STRIDE * (number - 1)
                if port >= 65536:
                    raise StackError(
                        f"{name} replica {number} would listen on {port}: lower {variable}"
                    )
                found[replica_name(name, number) + suffix] = port
    clashes = {p for p in found.values() if list(found.values()).count(p) > 1}
    if clashes:
        raise StackError(f"two services on one port: {sorted(clashes)} (see *_PORT variables)")
    return found


# ---- making a service local ------------------------------------------------------------


def localize(text: str, project: Project, local_ports: Mapping[str, int]) -> str:
    """``service:exposed_port`` (and Prometheus' ``localhost:9090``) as ``127.0.0.1:port``;
    ``service:gossip_port`` and ``service:metrics_port`` as its local gossip or metrics port."""
    services = project.services()
    exposed = {n: project.exposed_port(n) for n in local_ports if n in services}
    names = "|".join(sorted(map(re.escape, exposed), key=len, reverse=True))

    def one(match: re.Match[str]) -> str:
        service, port = match[1], int(match[2])
        local = local_ports[service] if exposed.get(service) == port else None
        local = local or local_ports.get(f"{service}:{port}")
        if local is None:
            raise StackError(f"{match[0]}: no such service port in the Compose files")
        return f"127.0.0.1:{local}"

    text = re.sub(rf"(?<![\w.-])({names}):(\d+)\b", one, text)
    return text.replace(
        f"localhost:{exposed['prometheus']}", f"127.0.0.1:{local_ports['prometheus']}"
    )


def path_map(service: dict[str, Any], layout: Layout) -> dict[str, str]:
    """Container path -> local path: bind mounts, named volumes (data dirs), secrets."""
    mapping = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        mapping[target] = source if source.startswith("/") else str(layout.data_dir / source)
    for secret in service.get("secrets", []):
        name = secret["source"] if isinstance(secret, dict) else secret
        where = layout.secrets_dir if name in redis_acl.ADDRESSED else layout.run_dir / "secrets"
        mapping[f"/run/secrets/{name}"] = str(where / name)
    return mapping


def translate(value: str, mapping: Mapping[str, str], localize_: Callable[[str], str]) -> str:
    for container, local in sorted(mapping.items(), key=lambda kv: -len(kv[0])):
        if value == container or value.startswith(container + "/") or f"={container}" in value:
            value = value.replace(container, local, 1)
    return localize_(value)


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


def binary(record: Service) -> str:
    found = shutil.which(record.binary or record.name)
    if found is None:
        raise StackError(f"{record.binary} is not installed (Debian package {record.package})")
    return found


def postgres_bin(name: str) -> str:
    """initdb, pg_ctl, psql, ...: beside the postgres binary its record names."""
    record = records()["postgres"]
    found = Path(record.binary or "").parent / name
    if not found.exists():
        raise StackError(f"{found} is not installed (Debian package {record.package})")
    return str(found)


def grafana_binary() -> str | None:
    return next((b for b in map(shutil.which, GRAFANA_BINARIES) if b), None)


def components(
    project: Project, layout: Layout, local_ports: Mapping[str, int], database_url_file: str
) -> list[Component]:
    """Every service of the environment as a local process, in start order (Grafana only
    when a binary is installed), each replica of a replicated one. ``database_url_file``:
    the API's database URL with its local address (a secret, so a file, never an
    environment value)."""
    replicas = project.replicas()
    made = []
    for name in (n for wave in project.start_waves() for n in wave):
        if name == "grafana" and grafana_binary() is None:
            continue
        for number in range(1, replicas.get(name, 1) + 1):
            made.append(_component(project, layout, local_ports, database_url_file, name, number))
    return made


def _component(
    project: Project,
    layout: Layout,
    local_ports: Mapping[str, int],
    database_url_file: str,
    name: str,
    number: int = 1,
) -> Component:
    """The Compose service ``name`` (its replica ``number``) as a local process."""
    service = project.services()[name]
    mapping = path_map(service, layout)

    def local(text: str) -> str:
        return localize(text, project, local_ports)

    env_vars = {k: str(v) for k, v in (service.get("environment") or {}).items()}
    env_vars = {k: translate(v, mapping, local) for k, v in env_vars.items()}
    command = [translate(str(a), mapping, local) for a in service.get("command") or []]
    health = project.healthcheck_url(name)
    port = local_ports.get(replica_name(name, number))
    probe_url = (
        re.sub(r"^http://127\.0\.0\.1:\d+", f"http://127.0.0.1:{port}", health)
        if health and port else None
    )  # fmt: skip
    volumes = [layout.data_dir / v.split(":")[0] for v in service.get("volumes") or []
               if not v.startswith("/")]  # fmt: skip
    secret = project.healthcheck_secret(name)  # its Authorization header's file
    probe = http_probe(probe_url, mapping[secret] if secret else None)
    inside = project.metrics_port(name)  # its metrics listener's port in Compose, if any
    metrics = local_ports.get(f"{replica_name(name, number)}:{inside}") if inside else None
    if metrics is not None:  # the environment's value that names it (9464): the local one
        env_vars = {k: str(metrics) if v == str(inside) else v for k, v in env_vars.items()}
    part = _local(records()[name], command, env_vars, layout, port, probe,
                  database_url_file, volumes)  # fmt: skip
    part.metrics = metrics
    if records()[name].runs == "binary":
        part.argv = [*entry_script(service, mapping), *part.argv]
    gossip = gossip_port(service)
    if gossip is not None:  # the cluster on its own loopback port, advertised as such
        part.gossip = local_ports[f"{name}:{gossip}"]
        address = f"127.0.0.1:{part.gossip}"
        part.argv = set_flag(set_flag(part.argv, GOSSIP_LISTEN, address), GOSSIP_ADVERTISE,
                             address)  # fmt: skip
    part.name = replica_name(name, number)
    return part


def entry_script(service: Mapping[str, Any], mapping: Mapping[str, str]) -> list[str]:
    """``[sh, <the script>]`` where a binary's Compose entry point is a script it mounts
    (``entrypoint: [/usr/local/bin/stack-entrypoint.sh, <the image's binary>]``): natively
    too it runs in front of the binary, which it execs (one PID), else nothing."""
    entrypoint = [str(e) for e in service.get("entrypoint") or []]
    script = mapping.get(entrypoint[0]) if entrypoint else None
    return ["/bin/sh", script] if script else []


def _local(
    record: Service,
    command: list[str],
    env_vars: dict[str, str],
    layout: Layout,
    port: int | None,
    http_probe: Callable[[], bool],
    database_url_file: str,
    volumes: list[Path],
) -> Component:
    """``volumes``: its named volumes' data directories; ``http_probe``: its healthcheck."""
    name = record.name
    address = f"127.0.0.1:{port}"
    url = f"http://{address}"
    data = volumes[0] if volumes else layout.data_dir / f"{name}-data"
    base_env = minimal_environ()
    environ = base_env | env_vars
    python = python_interpreter()
    if record.runs == "postgres":
        data = layout.postgres_dir / f"{name}-data"
        sockets = layout.postgres_dir / "postgres-socket"
        # the Compose command's settings (-c unix_socket_permissions=0700), local paths
        argv = [binary(record), *command[1:], "-D", str(data), "-p", str(port),
                "-k", str(sockets), "-c", "listen_addresses=127.0.0.1"]  # fmt: skip
        return Component(
            name, argv, base_env, port, _pg_ready(port), f"postgresql://{address}",  # type: ignore[arg-type]
            user="postgres" if os.geteuid() == 0 else None,  # it refuses to run as root
            stop_signal=signal.SIGINT, data=[data, sockets],
        )  # fmt: skip
    if record.runs == "redis":
        # the Compose command's --aclfile is the rendered ACL file; the probe logs in as the
        # healthcheck user, as the Compose healthcheck does
        argv = [binary(record), *command[1:], "--port", str(port), "--bind", "127.0.0.1",
                "--dir", str(data), "--daemonize", "no"]  # fmt: skip
        password = layout.run_dir / "secrets" / redis_acl.HEALTHCHECK_FILE
        probe = functools.partial(redis_ping, port, redis_acl.HEALTHCHECK_USER, password)
        return Component(name, argv, environ, port, probe,  # type: ignore[arg-type]
                         f"redis://{address}", data=[data])  # fmt: skip
    if record.runs == "assistant":
        environ |= python_environ() | {
            # Compose's file holds a URL that names the container host: the local one
            "ASSISTANT_DATABASE_URL_FILE": database_url_file,
            "ASSISTANT_HOST": "127.0.0.1",
            "ASSISTANT_PORT": str(port),
        }
        return Component(
            name, [*python, "-m", "assistant"], environ, port,
            lambda: http_ok(f"{url}/health/overall", any_status=True), url, job=record.job,
        )  # fmt: skip
    if record.runs == "python":
        environ |= python_environ()
        argv = [a for arg in command for a in (python if arg in ("python", "python3") else [arg])]
        if port is not None:
            argv = _set_pair(_set_pair(argv, "--host", "127.0.0.1"), "--port", str(port))
        if "--log" in argv:
            Path(argv[argv.index("--log") + 1]).parent.mkdir(parents=True, exist_ok=True)
        return Component(name, argv, environ, port, http_probe, url if port else None,
                         data=volumes)  # fmt: skip
    if record.runs == "grafana":
        grafana = grafana_binary() or "grafana"
        argv = [grafana, *([] if grafana.endswith("-server") else ["server"]),
                "--homepath", "/usr/share/grafana"]  # fmt: skip
        environ |= {
            "GF_SERVER_HTTP_ADDR": "127.0.0.1",
            "GF_SERVER_HTTP_PORT": str(port),
            "GF_PATHS_DATA": str(layout.data_dir / "grafana-data"),
            "GF_PATHS_PROVISIONING": str(layout.config_dir / "grafana-provisioning"),
        }
        return Component(name, argv, environ, port, http_probe, url, job=record.job,
                         data=volumes)  # fmt: skip
    # "binary": Debian's binary with the Compose command, listening on its local address;
    # Prometheus and Alertmanager read the native copies of their configuration
    argv = [binary(record), *command]
    if record.listen:
        argv = set_flag(argv, record.listen, address)
    if record.package in REWRITTEN:
        argv = set_flag(argv, "--config.file", str(layout.config_dir / REWRITTEN[record.package]))
        argv = set_flag(argv, "--web.external-url", url)
    return Component(name, argv, environ, port, http_probe, url, job=record.job, data=volumes)


# the variables a component gets from the caller (nothing else of the caller's environment:
# no secret, no unrelated setting reaches a child); everything else is the component's own
PASSED = ("LANG", "LC_ALL", "TZ")
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def minimal_environ(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """PATH (a fixed one), HOME (the components' user's, stack/native_user.py sets it when
    it differs), LANG, LC_ALL and TZ when the caller sets them."""
    return {"PATH": SAFE_PATH, "HOME": environ.get("HOME", "/"), "LANG": "C.UTF-8"} | {
        k: environ[k] for k in PASSED if environ.get(k)
    }


def python_interpreter() -> list[str]:
    """The interpreter of .venv (its real binary) without the site module: .venv's packages
    and the checkout come from PYTHONPATH (python_environ), as a venv would put them on the
    path, and no other site directory is read."""
    return [os.path.realpath(sys.executable), "-S"]


def python_environ() -> dict[str, str]:
    """PYTHONHOME (the interpreter's own prefix), PYTHONPATH: .venv's site-packages, then
    the checkout (assistant, app_metrics, receiver)."""
    prefixes = dict.fromkeys([sys.base_prefix, sys.base_exec_prefix])
    site = Path(sys.prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    found = {
        "PYTHONHOME": ":".join(prefixes),
        "PYTHONPATH": f"{site / 'site-packages'}:{ROOT}",
        "PYTHONDONTWRITEBYTECODE": "1",  # the checkout is not the components' to write
    }
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        # its libpython by the prefix, where the binary's own RUNPATH (pyenv's: an absolute
        # path under /root) may be closed to the components' user
        found["LD_LIBRARY_PATH"] = str(sysconfig.get_config_var("LIBDIR"))
    return found


def _set_pair(argv: list[str], flag: str, value: str) -> list[str]:
    argv = list(argv)
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    return argv


def _pg_ready(port: int) -> Callable[[], bool]:
    def probe() -> bool:
        done = subprocess.run(
            [postgres_bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port), "-U",
             "postgres"], capture_output=True, timeout=5, check=False,
        )  # fmt: skip
        return done.returncode == 0

    return probe


# ---- configuration files ---------------------------------------------------------------


def addressed_secrets(layout: Layout, local_ports: Mapping[str, int]) -> dict[Path, str]:
    """The native copies of the secret files that name Redis's address (the app's URL, the
    exporter's password file), with its local address: path -> text."""
    values = redis_acl.read_passwords(layout.run_dir / "secrets")
    address = f"127.0.0.1:{local_ports['redis']}"
    texts = redis_acl.addressed(values, address)
    return {layout.secrets_dir / name: text + "\n" for name, text in texts.items()}


def prometheus_config(
    project: Project, layout: Layout, local_ports: Mapping[str, int], running: set[str]
) -> str:
    """The environment's generated configuration (its topology's) with local addresses and
    paths; jobs of services that do not run natively (Grafana without a binary) left out.
    A job's DNS discovery becomes the file of its replicas' targets (discovered_targets);
    the folder of other hosts' targets is the checkout's prometheus/targets/."""
    root = project.root
    source = root / "prometheus" / "generated" / prometheus_file(project.env, project.ha)
    config = load_yaml(source.read_text())
    config["rule_files"] = [str(root / rules.LOADED / Path(f).name) for f in config["rule_files"]]

    def local(text: str) -> str:
        return localize(text, project, local_ports)

    secrets = f"{layout.run_dir / 'secrets'}/"

    targets = f"{root / 'prometheus' / 'targets'}/"

    def made_local(section: Any) -> Any:  # local addresses, the secrets' and targets' paths
        text = yaml.safe_dump(section).replace("/run/secrets/", secrets)
        return load_yaml(local(text.replace(TARGETS_MOUNT, targets)))

    config["alerting"] = made_local(config["alerting"])
    if "remote_write" in config:  # the HA topology's long-term store
        config["remote_write"] = made_local(config["remote_write"])
    jobs = []
    for job in config["scrape_configs"]:
        services = {"prometheus" if h == "localhost" else h for h in job_hosts(job)}
        if not services <= running:
            continue
        dns = job.pop("dns_sd_configs", [])
        if dns:  # one file of every name's replicas, read as often as DNS would be asked
            found = {"files": [str(layout.targets_dir / f"{job['job_name']}.yml")]}
            found |= {k: v for k, v in dns[0].items() if k == "refresh_interval"}
            job["file_sd_configs"] = [*job.get("file_sd_configs", []), found]
        jobs.append(made_local(job))
    config["scrape_configs"] = jobs
    return "# The native runtime's copy: do not edit (stack/native_config.py).\n" + yaml.safe_dump(
        config, sort_keys=False
    )


def discovered_targets(
    project: Project, layout: Layout, local_ports: Mapping[str, int], running: set[str]
) -> dict[Path, str]:
    """Per job that discovers its targets by DNS, the file (file_sd_configs) the native
    Prometheus reads them from instead: each running replica of each name it resolves, at
    the local address of the port it scrapes (the API's metrics listener), as DNS would have
    found it (``__meta_dns_name``: the job's own relabelling turns it into ``component``)."""
    source = project.root / "prometheus" / "generated" / prometheus_file(project.env, project.ha)
    files = {}

    def scraped(replica: str, name: str, port: int) -> int:  # that port's local one
        return local_ports[replica if project.exposed_port(name) == port else f"{replica}:{port}"]

    for job in load_yaml(source.read_text())["scrape_configs"]:
        groups = [
            {"targets": [f"127.0.0.1:{scraped(replica, name, int(dns['port']))}"],
             "labels": {"__meta_dns_name": name}}
            for dns in job.get("dns_sd_configs") or []
            for name in dns["names"]
            for number in range(1, project.replicas().get(name, 1) + 1)
            if (replica := replica_name(name, number)) in running
        ]  # fmt: skip
        if job.get("dns_sd_configs") and set(job_hosts(job)) <= running:
            text = "# The native runtime's targets: do not edit (stack/native_config.py).\n"
            files[layout.targets_dir / f"{job['job_name']}.yml"] = text + yaml.safe_dump(groups)
    return files


def alertmanager_config(project: Project, layout: Layout, local_ports: Mapping[str, int]) -> str:
    text = (layout.run_dir / "alertmanager.yml").read_text()
    text = text.replace("/etc/alertmanager/templates/", f"{project.root}/alertmanager/templates/")
    text = text.replace("/run/secrets/", f"{layout.run_dir / 'secrets'}/")
    return localize(text, project, local_ports)


def grafana_provisioning(
    project: Project,
    layout: Layout,
    local_ports: Mapping[str, int],
    seen: Callable[[str], str] = str,
) -> None:
    """A copy of grafana/provisioning, with the files the topology's Compose files mount over
    it (the HA topology's datasources), local addresses and the dashboards' real path
    (``seen``: the paths as Grafana's user reaches them, stack/native_user.py)."""
    target = layout.config_dir / "grafana-provisioning"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(project.root / "grafana" / "provisioning", target)
    for volume in project.services()["grafana"].get("volumes") or []:
        source, inside = volume.split(":")[:2]
        if inside.startswith(GRAFANA_PROVISIONING + "/"):
            shutil.copyfile(source, target / inside.removeprefix(GRAFANA_PROVISIONING + "/"))
    dashboards = str(project.root / "grafana" / "dashboards")
    secrets = f"{layout.run_dir / 'secrets'}/"
    for path in target.rglob("*.yml"):
        text = localize(path.read_text(), project, local_ports)
        text = text.replace("/run/secrets/", secrets)  # the datasource's password
        path.write_text(seen(text.replace("/var/lib/grafana/dashboards", dashboards)))
