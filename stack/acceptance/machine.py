"""The bare machine: a container of the debootstrap base on the local engine; every command
goes through `podman exec`, its output streamed as it comes."""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass

from .. import images
from ..engine import podman_env
from ..settings import StackError
from .sources import Sources

CONTAINER = f"stack-acceptance-{os.getpid()}"
DEFAULT_TIMEOUT = 600.0
PASSED = ("CI",)  # CI's own variable: make test there runs the HA module's shorter form


def _podman(*args: str, stdin: bytes | None = None, timeout: float = 120.0) -> str:
    done = subprocess.run(
        ["podman", *args], input=stdin, capture_output=True, env=podman_env(),
        timeout=timeout, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise StackError(f"podman {args[0]} failed: {done.stderr.decode(errors='replace')}")
    return done.stdout.decode(errors="replace")


@dataclass
class Run:
    command: str
    code: int
    output: str
    seconds: float


class Machine:
    """The bare container; every command goes through `podman exec`."""

    def __init__(self, sources: Sources) -> None:
        self.sources = sources
        mounts = [a for m in sorted(sources.mounts) for a in ("--volume", f"{m}:{m}:ro")]
        # root on a machine may look into every process (ss -p, `make up` naming a port's
        # holder); a container's root may not unless given CAP_SYS_PTRACE
        _podman("run", "--detach", "--init", "--name", CONTAINER, "--hostname", "fresh",
                "--cap-add", "SYS_PTRACE", "--shm-size", "256m", *mounts, images.BASE,
                "sleep", "infinity")  # fmt: skip

    def close(self) -> None:
        subprocess.run(["podman", "rm", "--force", "--time", "5", CONTAINER],
                       capture_output=True, env=podman_env(), timeout=120, check=False)  # fmt: skip

    def put(self, files: bytes, into: str = "/", user: str = "root") -> None:
        _podman("exec", "--interactive", "--user", user, CONTAINER, "tar", "-x", "-C", into,
                stdin=files)  # fmt: skip

    def run(
        self, command: str, user: str = "root", workdir: str = "/", show: bool = True,
        timeout: float = DEFAULT_TIMEOUT, env: dict[str, str] | None = None,
    ) -> Run:  # fmt: skip
        """The shell line in the container, its output streamed (indented) as it comes;
        ``env``: variables for this line alone."""
        passed = {**self.sources.env, **{k: v for k, v in os.environ.items() if k in PASSED},
                  **(env or {})}  # fmt: skip
        env = [a for k, v in passed.items() for a in ("--env", f"{k}={v}")]
        argv = ["podman", "exec", "--user", user, "--workdir", workdir, *env, CONTAINER,
                "sh", "-c", command]  # fmt: skip
        begun = time.monotonic()
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   env=podman_env(), text=True, errors="replace")  # fmt: skip
        watchdog = threading.Timer(timeout, process.kill)
        watchdog.start()
        lines: list[str] = []
        assert process.stdout is not None
        try:
            for line in process.stdout:
                lines.append(line)
                if show:
                    print(f"    | {line}", end="", flush=True)
            code = process.wait()
        finally:
            watchdog.cancel()
            if process.poll() is None:
                process.kill()
                process.wait()
        if time.monotonic() - begun >= timeout:
            raise StackError(f"{command!r} did not finish within {timeout:g} s")
        return Run(command, code, "".join(lines), time.monotonic() - begun)

    def read(self, path: str) -> bytes:
        """A file of the container, as root."""
        done = subprocess.run(["podman", "exec", CONTAINER, "cat", path], capture_output=True,
                              env=podman_env(), timeout=120, check=False)  # fmt: skip
        if done.returncode != 0:
            raise StackError(f"{path} in the container: {done.stderr.decode(errors='replace')}")
        return done.stdout

    def python(self, code: str) -> str:
        """A Python snippet in the container (Python is a prerequisite), its output."""
        done = self.run(f"python3 -c {shlex.quote(code)}", show=False, timeout=60)
        if done.code != 0:
            raise StackError(f"python3 in the container failed:\n{done.output}")
        return done.output
