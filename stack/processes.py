"""Detached processes that outlive `make up`, known by PID and start time (so a recycled PID
is never signalled), with the probes the native runtime waits on."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from .settings import StackError

STOP_TIMEOUT = 10.0


@dataclass
class Running:
    pid: int
    start_time: int  # /proc/<pid>/stat field 22: tells a live process from a recycled PID
    log: str

    def alive(self) -> bool:
        return start_time(self.pid) == self.start_time

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def followed_engine(description: str) -> Running:
    """For the local engine's helpers: the engine process (the podman API service) they run
    beside, from ``--engine-pid PID --engine-start-time TICKS``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--engine-pid", type=int, required=True)
    parser.add_argument("--engine-start-time", type=int, required=True, help="/proc stat field 22")
    args = parser.parse_args()
    return Running(args.engine_pid, args.engine_start_time, "")


def start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie: exited, not yet reaped
        return None
    return int(fields[19])


def launch(
    argv: list[str],
    log: Path,
    env: dict[str, str] | None = None,
    user: str | None = None,
    cwd: Path | None = None,
    pass_fds: tuple[int, ...] = (),
    umask: int = 0o027,
) -> Running:
    """Start ``argv`` in its own session, output appended to ``log`` (the caller's, 0600: the
    process gets it open and writes it without being able to read or replace it); as
    ``user`` (its group only) when given, with the open directories ``pass_fds`` (their
    ``/proc/self/fd/<n>`` paths, stack/native_user.py). A program whose path is such a
    directory's is started through env(1): the link only resolves for the process once it
    has started a program of its own user."""
    log.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "ab") as out:
        out.write(f"\n==> {time.strftime('%F %T')} {' '.join(argv)}\n".encode())
        out.flush()
        kwargs: dict[str, object] = {}
        if user is not None:
            kwargs.update(user=user, group=user, extra_groups=[])
        program = argv[0]
        if program.startswith("/proc/self/fd/"):
            argv = ["/usr/bin/env", "--", *argv]
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
                pass_fds=pass_fds,
                umask=umask,
                **kwargs,  # type: ignore[arg-type]
            )
        except OSError as error:  # not found, or not executable by ``user``
            who = f" as {user}" if user else ""
            raise StackError(f"{program} cannot be started{who}: {error.strerror}") from None
    started = None
    for _ in range(50):  # /proc appears at once; bounded anyway
        started = start_time(proc.pid)
        if started is not None or proc.poll() is not None:
            break
        time.sleep(0.01)
    return Running(proc.pid, started or 0, str(log))


def stop(running: Running, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> bool:
    """Signal the process (only if it is still the one started); wait, then SIGKILL its
    process group. True when it was running."""
    if not running.alive():
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(running.pid, sig)
    deadline = time.monotonic() + timeout
    while running.alive() and time.monotonic() < deadline:
        _reap(running.pid)
        time.sleep(0.05)
    if running.alive():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(running.pid, signal.SIGKILL)
        for _ in range(100):
            _reap(running.pid)
            if not running.alive():
                break
            time.sleep(0.05)
    _reap(running.pid)
    return True


def _reap(pid: int) -> None:
    """Collect the exit status when the process is our child (the tests' in-process runs)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def log_tail(path: str | Path, lines: int = 15) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "<no log>"
    return "\n".join(text.rstrip().splitlines()[-lines:])


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` different ports the kernel reports free right now: each held until all are
    chosen (released one at a time, the same port can be handed out twice)."""
    with contextlib.ExitStack() as held:
        socks = [held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                 for _ in range(count)]  # fmt: skip
        for sock in socks:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel reports free right now (bind to port 0, then release it)."""
    return free_ports(1, host)[0]


def _listeners(port: int) -> dict[str, int]:
    """``{"socket:[inode]": uid}`` of the sockets listening on TCP ``port`` (/proc/net/tcp and
    tcp6; state 0A is LISTEN)."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    found[f"socket:[{fields[9]}]"] = int(fields[7])
    return found


def port_holder(port: int) -> str:
    """Who listens on ``port``: ``pid 123 (prometheus)``, read from /proc (needs no tool);
    where another user's process cannot be seen into, at least that user."""
    listeners = _listeners(port)
    if not listeners:
        return "nothing visible (a socket in TIME_WAIT?)"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in listeners:
                        name = (proc / "comm").read_text().strip()
                        return f"pid {proc.name} ({name})"
    uid = next(iter(listeners.values()))
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = f"uid {uid}"
    return f"a process of user {user} (its PID is hidden from this user)"


def http_ok(
    url: str,
    any_status: bool = False,
    timeout: float = 2.0,
    headers: Mapping[str, str] | None = None,
) -> bool:
    """``url`` answers 200 (or, with ``any_status``, any HTTP status); ``headers``: sent
    with the request (the monitoring user's Authorization, stack/webauth.py)."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError:
        return any_status
    except OSError:
        return False


def http_probe(url: str | None, header_file: str | None = None) -> Callable[[], bool]:
    """A probe: ``url`` answers 200 (no URL: always), sending the ``Authorization`` header
    that ``header_file`` holds, if any (a healthcheck's, stack/project.py)."""

    def probe() -> bool:
        if url is None:
            return True
        headers = {"Authorization": Path(header_file).read_text().strip()} if header_file else {}
        return http_ok(url, headers=headers)

    return probe


def redis_ping(
    port: int, user: str | None = None, password_file: Path | None = None, timeout: float = 1.0
) -> bool:
    """Redis on ``port`` answers PING, after ``AUTH user <the password_file's>`` if given."""
    command = b""
    if user is not None and password_file is not None:
        try:
            password = password_file.read_text().strip()
        except OSError:
            return False
        command = _resp("AUTH", user, password)
    expected = (b"+OK\r\n" if command else b"") + b"+PONG\r\n"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(command + _resp("PING"))
            reply = b""
            for _ in range(8):  # two short replies; bounded
                if reply.count(b"\r\n") >= expected.count(b"\r\n"):
                    break
                chunk = sock.recv(256)
                if not chunk:
                    break
                reply += chunk
            return reply == expected
    except OSError:
        return False


def _resp(*words: str) -> bytes:
    """A command as a RESP array (any byte in a password is safe)."""
    parts = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


# ---- Prometheus' targets -----------------------------------------------------------------

TARGETS_TIMEOUT = 60.0


def targets(prometheus: str, headers: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    url = f"{prometheus}/api/v1/targets?state=active"
    request = urllib.request.Request(url, headers=dict(headers or {}))
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())["data"]["activeTargets"]  # type: ignore[no-any-return]


def cluster_status(alertmanager: str, headers: Mapping[str, str] | None = None) -> str:
    """Its cluster as it sees it: ``ready, 3 members`` (``disabled`` without one)."""
    request = urllib.request.Request(f"{alertmanager}/api/v2/status", headers=dict(headers or {}))
    with urllib.request.urlopen(request, timeout=5) as response:
        cluster = json.loads(response.read())["cluster"]
    if cluster["status"] == "disabled":
        return "disabled"
    return f"{cluster['status']}, {len(cluster.get('peers') or [])} members"


def scrape_jobs(prometheus: str, headers: Mapping[str, str] | None = None) -> set[str]:
    """The jobs of the configuration it runs."""
    request = urllib.request.Request(
        f"{prometheus}/api/v1/status/config", headers=dict(headers or {})
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        config = yaml.safe_load(json.loads(response.read())["data"]["yaml"])
    return {job["job_name"] for job in config.get("scrape_configs") or []}


def wait_for_targets(prometheus: str, say=print, headers: Mapping[str, str] | None = None) -> None:
    """Until every job has a target and every target is up (the first scrape comes ~6 s after
    Prometheus starts; a discovered job's first targets a DNS refresh or so later)."""
    deadline = time.monotonic() + TARGETS_TIMEOUT
    last = ""
    jobs: set[str] = set()
    active: list[dict[str, Any]] = []
    while True:
        try:
            jobs = jobs or scrape_jobs(prometheus, headers)
            active = targets(prometheus, headers)
        except OSError:  # restarting
            active = []
        up = [t for t in active if t["health"] == "up"]
        undiscovered = sorted(jobs - {t["scrapePool"] for t in active})
        line = f"  targets up: {len(up)}/{len(active)}" + (
            f", none yet for {', '.join(undiscovered)}" if undiscovered else ""
        )
        if line != last:
            say(line)
            last = line
        if jobs and not undiscovered and len(up) == len(active):
            return
        if time.monotonic() > deadline:
            down = [
                f"{t['labels']['job']} {t['scrapeUrl']}: {t['lastError'] or t['health']}"
                for t in active
                if t["health"] != "up"
            ] + [f"{job}: no target discovered" for job in undiscovered]
            raise StackError(
                f"not every target is up after {TARGETS_TIMEOUT:g} s (the stack keeps running; "
                "see `make status`, `make logs`):\n  "
                + "\n  ".join(down or [f"{prometheus} answers no configuration"])
            )
        time.sleep(0.2)
