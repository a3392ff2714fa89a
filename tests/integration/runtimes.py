"""The stack under test, on whichever runtime is present: Compose through testcontainers when
a Docker engine answers, the native runtime otherwise. Tests see only ``Stack``: URLs, and
``stop``/``start`` of one component."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from stack import ROOT, processes
from stack.compose import engine_error
from stack.native import running_of
from stack.native_config import METRICS, REPLICA_STRIDE, port_variables
from stack.processes import port_free, stop, wait_for_targets
from stack.project import Project

ENV = "dev"
UP_TIMEOUT = 600.0


class Stack:
    runtime = "?"
    prometheus: str
    alertmanager: str
    receiver: str
    api: str  # the first replica's
    api_replicas: list[str]  # each API replica's URL, the first one's first
    api_token_file: Path

    environ: dict[str, str]  # what `python -m stack` needs to reach this stack
    runtime_flag: str  # its --runtime

    def url(self, component: str) -> str:
        """``http://127.0.0.1:<port>`` where the component (a replica, peer, the global view)
        is published."""
        raise NotImplementedError

    def stop(self, component: str) -> None:
        raise NotImplementedError

    def start(self, *components: str) -> None:
        """Start them again together (one call: each waits for every target up)."""
        raise NotImplementedError

    def pause(self, component: str) -> None:
        """Freeze it (SIGSTOP, `compose pause`): a hung process, its port still open."""
        raise NotImplementedError

    def unpause(self, component: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def main_processes(self) -> dict[str, int]:
        """Each running component's main process, by its host PID."""
        raise NotImplementedError

    def containers(self) -> dict[str, dict[str, Any]]:
        """Each running component's container, as the engine inspects it (none natively)."""
        return {}


class NativeStack(Stack):
    """`python -m stack up --runtime native` into a throwaway run root, every port free;
    ``api_replicas`` API processes (API_REPLICAS), each on a free port of its own."""

    runtime = "native"
    runtime_flag = "native"

    def __init__(self, topology: str = "single", api_replicas: int = 1) -> None:
        self.topology = topology
        self.root = Path(tempfile.mkdtemp(prefix="stack-it-"))
        self.root.chmod(0o755)  # PostgreSQL (user postgres) keeps its data below
        self.ports = free_ports(api_replicas)
        self.environ = {
            **os.environ,
            "STACK_RUN_ROOT": str(self.root),
            "STACK_DOTENV": str(self.root / "no.env"),  # dev: the example values
            "API_REPLICAS": str(api_replicas),
            **{port_variables()[s]: str(p) for s, p in self.ports.items()},
        }
        self.prometheus = f"http://127.0.0.1:{self.ports['prometheus']}"
        self.alertmanager = f"http://127.0.0.1:{self.ports['alertmanager']}"
        self.receiver = f"http://127.0.0.1:{self.ports['receiver']}"
        self.api = f"http://127.0.0.1:{self.ports['api']}"
        self.api_token_file = self.root / ENV / "secrets" / "assistant_api_token"
        self.output = ""
        try:
            self._run("up")
        except BaseException:
            with contextlib.suppress(Exception):  # the failed `up` is the news
                self.close()  # what it started, and the run root
            raise
        # each API replica's URL as the native state names it (api, api-2, ...)
        components = self._state()["components"]
        self.api_replicas = [e["url"] for e in components.values() if e.get("service") == "api"]

    def _run(self, command: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "stack", command, "--env", ENV, "--runtime", "native",
             "--topology", self.topology],
            cwd=ROOT, env=self.environ, capture_output=True, text=True, timeout=UP_TIMEOUT,
            check=False,
        )  # fmt: skip
        self.output += done.stdout + done.stderr
        if done.returncode != 0:
            raise RuntimeError(f"stack {command} failed:\n{done.stdout}{done.stderr}")

    def url(self, component: str) -> str:
        return f"http://127.0.0.1:{self.ports[component]}"

    def _state(self) -> dict:
        return json.loads((self.root / "native-state.json").read_text())  # type: ignore[no-any-return]

    def stop(self, component: str) -> None:
        entry = self._state()["components"][component]
        stop(running_of(entry), entry["stop_signal"])

    def start(self, *components: str) -> None:
        self._run("up")  # starts what is not running, changes nothing else

    def pause(self, component: str) -> None:
        os.kill(self._state()["components"][component]["pid"], signal.SIGSTOP)

    def unpause(self, component: str) -> None:
        os.kill(self._state()["components"][component]["pid"], signal.SIGCONT)

    def main_processes(self) -> dict[str, int]:
        return {name: entry["pid"] for name, entry in self._state()["components"].items()}

    def close(self) -> None:
        try:
            self._run("down")
        finally:
            # a safety net if `down` failed: whatever the state still names, by PID
            state = self.root / "native-state.json"
            if state.exists():
                for entry in json.loads(state.read_text())["components"].values():
                    stop(running_of(entry), entry["stop_signal"])
            subprocess.run(["rm", "-rf", str(self.root)], check=False)


def free_ports(api_replicas: int, tries: int = 50) -> dict[str, int]:
    """A free port per port variable, the API's (and its metrics listener's) chosen so that
    its other replicas' ports (REPLICA_STRIDE apart) are free too and meet no other one."""
    for _ in range(tries):
        names = list(port_variables())
        chosen = dict(zip(names, processes.free_ports(len(names)), strict=True))
        replicas = {chosen[key] + REPLICA_STRIDE * n for key in ("api", "api" + METRICS)
                    for n in range(1, api_replicas)}  # fmt: skip
        if all(port_free(p) for p in replicas) and not replicas & set(chosen.values()):
            return chosen
    raise RuntimeError(f"no free ports for {api_replicas} API replicas in {tries} tries")


class ComposeStack(Stack):
    """The dev Compose files through testcontainers' DockerCompose (``wait=True``: up to
    healthy), on a Docker engine or else the local engine with the local images, in
    ``topology`` with ``api_replicas`` API replicas. Its own project, run root and published
    ports, so a `make up` stack is left alone; ``down -v`` at the end, and the process
    environment as it found it."""

    runtime = "compose"
    runtime_flag = "compose"

    def __init__(self, topology: str = "single", api_replicas: int = 1) -> None:
        from stack.compose import local_prometheus_config, target
        from stack.lint import preflight

        self.saved = dict(os.environ)  # restored by close(): the next stack starts from it
        self.root = Path(tempfile.mkdtemp(prefix="stack-it-"))
        where = target(start=True, say=lambda line, **_: print(line, file=sys.stderr))
        self.runtime = "compose (local engine)" if where.local else "compose"
        os.environ.update(
            where.environ, STACK_RUN_ROOT=str(self.root), STACK_DOTENV=str(self.root / "no.env"),
            API_REPLICAS=str(api_replicas), COMPOSE_PROJECT_NAME=f"assistant-it-{os.getpid()}",
        )  # fmt: skip
        run_dir = preflight(ENV, topology, say=lambda _: None)
        project = Project(ENV, run_dir, where.local, topology=topology)
        if where.local:
            local_prometheus_config(ENV, run_dir, project.ha)
        self.api_token_file = run_dir / "secrets" / "assistant_api_token"
        # the services dev publishes on the host, each on a free port of its own (set before
        # the project's variables, which derive the API's published ports from it)
        published = [n for n, s in project.services().items() if s.get("ports")]
        ports = processes.free_ports(len(published))
        os.environ.update(
            {port_variables()[name]: str(port) for name, port in zip(published, ports, strict=True)}
        )
        self.exposed = {name: project.exposed_port(name) for name in published}
        os.environ.update(project.variables())
        self.environ = dict(os.environ)
        self.args = [a for f in project.files() for a in ("-f", str(f))]  # project: env
        self.local = where.local
        from testcontainers.compose import DockerCompose  # reads TESTCONTAINERS_* at import

        self.compose = DockerCompose(
            ROOT / "compose", compose_file_name=[a for a in self.args if a != "-f"],
            wait=True, build=not where.local, pull=False,
        )  # fmt: skip
        begin = time.monotonic()
        try:
            self.compose.start()
            self.healthy_after = time.monotonic() - begin
            self.prometheus = self.url("prometheus")
            self.alertmanager = self.url("alertmanager")
            self.receiver = self.url("receiver")
            self.api_replicas = [self.url("api", n) for n in range(1, api_replicas + 1)]
            self.api = self.api_replicas[0]
            wait_for_targets(self.prometheus, say=lambda _: None)
        except BaseException:
            self.close()
            raise

    def url(self, component: str, index: int = 1) -> str:
        """Its published port (``index``: which of its replicas), as `compose port` says."""
        done = subprocess.run(
            ["docker", "compose", *self.args, "port", "--index", str(index), component,
             str(self.exposed[component])],
            cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        return f"http://127.0.0.1:{done.stdout.strip().rpartition(':')[2]}"

    def _compose(self, *args: str) -> None:
        subprocess.run(["docker", "compose", *self.args, *args], cwd=ROOT, check=True)

    def stop(self, component: str) -> None:
        self._compose("stop", component)

    def start(self, *components: str) -> None:
        pull = ["--pull", "never"] if self.local else []
        self._compose("up", "--detach", "--wait", *pull, *components)
        wait_for_targets(self.prometheus, say=lambda _: None)  # as the native `up` does

    def pause(self, component: str) -> None:
        self._compose("pause", component)

    def unpause(self, component: str) -> None:
        # not `compose unpause`: on Podman it finds no container to thaw (it asks for the
        # running ones, and a paused one is not), so the engine's own, by container
        listed = subprocess.run(
            ["docker", "compose", *self.args, "ps", "--quiet", "--all", component], cwd=ROOT,
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout.split()  # fmt: skip
        subprocess.run(["docker", "unpause", *listed], check=True, timeout=60)

    def containers(self) -> dict[str, dict[str, Any]]:
        listed = subprocess.run(
            ["docker", "compose", *self.args, "ps", "-q"], cwd=ROOT, capture_output=True,
            text=True, check=True, timeout=60,
        ).stdout.split()  # fmt: skip
        inspected = subprocess.run(
            ["docker", "inspect", *listed], capture_output=True, text=True, check=True,
            timeout=60,
        ).stdout  # fmt: skip
        return {
            c["Config"]["Labels"]["com.docker.compose.service"]: c for c in json.loads(inspected)
        }

    def main_processes(self) -> dict[str, int]:
        return {name: c["State"]["Pid"] for name, c in self.containers().items()}

    def close(self) -> None:
        try:
            self.compose.stop(down=True)  # down -v: the project's volumes go too
        finally:
            subprocess.run(["rm", "-rf", str(self.root)], check=False)
            os.environ.clear()
            os.environ.update(self.saved)


def start_stack(topology: str = "single", api_replicas: int = 1) -> Stack:
    """STACK_TEST_RUNTIME (make test-integration RUNTIME=...): native, compose, or auto
    (Compose when a Docker engine answers, else native)."""
    runtime = os.environ.get("STACK_TEST_RUNTIME", "auto")
    if runtime == "auto":
        runtime = "compose" if engine_error() is None else "native"
    if runtime not in ("native", "compose"):
        raise ValueError(f"STACK_TEST_RUNTIME={runtime!r}: use auto, native or compose")
    kind = ComposeStack if runtime == "compose" else NativeStack
    return kind(topology=topology, api_replicas=api_replicas)
