"""Finding 7: containers not hardened; Prometheus and Alertmanager unauthenticated.

- Every service of every environment, as Compose merges the files (with and without the local
  engine's overlay), runs read-only, without capabilities, without a way to gain privileges,
  with a pids limit and as a user other than root, unless the file states why.
- In stage and prod, Prometheus, Alertmanager, node_exporter and postgres_exporter, started
  natively (Debian's binaries) with the command, mounts and web configuration their Compose
  service gives them, refuse a request without the monitoring user (401) and answer it with
  the user (200); Prometheus' lifecycle API is off, so even the user cannot stop it.

Without the fix the first fails (no setting was there), and so does the second: no
``--web.config.file`` meant 200 without credentials, and ``--web.enable-lifecycle`` let
``POST /-/quit`` stop Prometheus.
"""

from __future__ import annotations

import base64
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stack import ENVIRONMENTS, ROOT, webauth
from stack.hardening import stated_exceptions
from stack.lint import stand_in_run_dir
from stack.native_config import Layout, binary, path_map, set_flag, translate
from stack.processes import free_port
from stack.project import Project
from stack.services import records
from stack.tools import checkable
from tests.stack.conftest import Process

from .conftest import Attack

# each component: a request that reads or changes it, the path of its healthcheck
PROTECTED = {
    "prometheus": ("GET", "/api/v1/status/config"),
    "alertmanager": ("POST", "/api/v2/silences"),
    "node-exporter": ("GET", "/metrics"),
    "postgres-exporter": ("GET", "/metrics"),
    # a probe is a request to any URL: only for the monitoring user
    "blackbox-exporter": ("GET", "/probe?module=http_2xx&target=http://127.0.0.1:1/"),
}
CONFIGURED = ("prometheus", "alertmanager")  # their --config.file: a checkable copy


# ---- the containers ----------------------------------------------------------------------


def weaknesses(service: dict[str, Any], reasons: dict[str, Any]) -> list[str]:
    """What the service lacks, each without a reason in its x-hardening-exception."""
    found = {
        "read_only": service.get("read_only") is not True,
        "cap_drop": service.get("cap_drop") != ["ALL"],
        "no-new-privileges": "no-new-privileges:true" not in (service.get("security_opt") or []),
        "pids_limit": not int(service.get("pids_limit") or 0) > 0,
        "user": str(service.get("user", "0")).split(":")[0] in ("", "0", "root"),
        "cap_add": bool(service.get("cap_add")),
    }
    return [setting for setting, weak in found.items() if weak and not reasons.get(setting)]


@pytest.mark.parametrize("local", [False, True], ids=["images", "local-images"])
@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_container_is_read_only_unprivileged_and_bounded(
    env: str, local: bool, attack: Callable[[str, str], Attack], tmp_path: Path
) -> None:
    a = attack(
        f"write, escalate or fork-bomb from a container ({env}{', local' if local else ''})",
        "read-only root, no capabilities, no-new-privileges, pids limit, non-root user",
    )
    project = Project(env, stand_in_run_dir(env, tmp_path), local)
    services, stated = project.services(), stated_exceptions(project.files())
    weak = {n: w for n, s in services.items() if (w := weaknesses(s, stated.get(n) or {}))}
    a.happened = f"{len(services)} services; " + (
        "; ".join(f"{n} lacks {', '.join(w)}" for n, w in weak.items()) or "every one hardened"
    )
    assert not weak
    a.blocked = True


# ---- the monitoring components' web authentication ----------------------------------------


def request(url: str, method: str = "GET", user: tuple[str, str] | None = None) -> int:
    """The HTTP status ``url`` answers (0: none), with basic authentication when ``user`` is
    given."""
    headers = {"Content-Type": "application/json"}
    if user:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(user).encode()).decode()
    data = b"{}" if method == "POST" else None
    call = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(call, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0  # no answer: it stopped


def unwatched(text: str) -> str:
    """The database postgres_exporter watches: a closed port here (it reports the database
    down at once, where a name that does not resolve makes each scrape wait)."""
    return text.replace("postgres:5432", "127.0.0.1:1")


def start(component: str, env: str, work: Path) -> tuple[Process, str, str]:
    """The component as its Compose service runs it, natively: Debian's binary, the service's
    command with its mounts and secrets mapped onto the files `make up` writes, on a free
    port. Returns the process, its URL and the monitoring password."""
    runs = work / "runs"
    project = Project(env, stand_in_run_dir(env, runs))
    service = project.services()[component]
    record = records()[component]
    mapping = path_map(service, Layout(env, runs))
    argv = [binary(record), *(translate(str(a), mapping, str) for a in service["command"])]
    variables = (service.get("environment") or {}).items()
    environ = os.environ | {k: translate(str(v), mapping, unwatched) for k, v in variables}
    url = f"http://127.0.0.1:{free_port()}"
    argv = set_flag(argv, record.listen or "", url.removeprefix("http://"))
    if component in CONFIGURED:
        config = Path(next(a for a in argv if a.startswith("--config.file="))[14:])
        copy = work / f"{component}.yml"
        copy.write_text(checkable(config.read_text(), ROOT, project.run_dir / "secrets"))
        argv = set_flag(argv, "--config.file", str(copy))
    secrets = project.run_dir / "secrets"
    header = {"Authorization": (secrets / webauth.AUTHORIZATION_FILE).read_text().strip()}
    # ready: Prometheus' and Alertmanager's /-/ready; an exporter's landing page (its
    # /metrics waits for the database it cannot reach here)
    ready = "/-/ready" if component in CONFIGURED else "/"
    process = Process(argv, work / f"{component}.log", url + ready, header, environ)
    return process, url, (secrets / "monitoring_password").read_text().strip()


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Callable[[str, str], tuple[str, str]]]:
    """``started(component, env)``: its URL and password; stopped by PID at the end."""
    running: list[Process] = []

    def begin(component: str, env: str) -> tuple[str, str]:
        process, url, password = start(component, env, tmp_path / component)
        running.append(process)
        return url, password

    yield begin
    for process in running:
        process.stop()


@pytest.mark.parametrize("component", PROTECTED)
@pytest.mark.parametrize("env", ["stage", "prod"])
def test_monitoring_components_refuse_requests_without_the_monitoring_user(
    env: str,
    component: str,
    attack: Callable[[str, str], Attack],
    started: Callable[[str, str], tuple[str, str]],
) -> None:
    method, path = PROTECTED[component]
    a = attack(f"anonymous {method} {component} {path} ({env})", "401; 200 with the user")
    url, password = started(component, env)
    user = (webauth.USER, password)
    ready = request(url + ("/-/ready" if component in CONFIGURED else "/"))
    answers = {
        "anonymous": request(url + path, method),
        "wrong password": request(url + path, method, (webauth.USER, password + "x")),
        "anonymous health": ready,
    }
    # with the user: what the anonymous request tried, or for Alertmanager (an empty silence
    # would be 400) its status
    with_user = request(url + (path if method == "GET" else "/api/v2/status"), "GET", user)
    a.happened = ", ".join(f"{k} {v}" for k, v in answers.items()) + f", user {with_user}"
    assert set(answers.values()) == {401}
    assert with_user == 200
    a.blocked = True


@pytest.mark.parametrize("env", ["stage", "prod"])
def test_prometheus_cannot_be_stopped_over_http(
    env: str,
    attack: Callable[[str, str], Attack],
    started: Callable[[str, str], tuple[str, str]],
) -> None:
    a = attack(f"POST /-/quit to stop Prometheus ({env})", "401; 403 even with the user")
    url, password = started("prometheus", env)
    anonymous = request(url + "/-/quit", "POST")
    with_user = request(url + "/-/quit", "POST", (webauth.USER, password))
    alive = request(url + "/-/healthy", "GET", (webauth.USER, password))
    a.happened = f"anonymous {anonymous}, with the user {with_user}, then /-/healthy {alive}"
    assert (anonymous, with_user, alive) == (401, 403, 200)
    a.blocked = True
