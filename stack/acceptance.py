"""The fresh-machine acceptance check (`make acceptance`): the README's quick start, run as a
newcomer would, on a bare Debian 12 container on the local engine.

- The machine: the debootstrap minbase (images.py), nothing else installed; the host's apt and
  pip configuration copied in (sources, apt.conf.d, pip.conf files, the certificates they trust)
  and the local package indexes they name mounted read-only, so it reaches the same package
  sources as the host. No host name is written here.
- The commands: the lines between the README's quick-start markers. The first installs the
  prerequisites; the `git clone` becomes the committed tree (`git archive HEAD`, so an
  uncommitted file cannot make it pass); every `make` line runs as written.
- Before root runs them, another user runs each `make` line on the bare machine: it must stop
  with one message naming the exact `sudo apt-get install` and leave no .run/ and no .venv/.
  Root's runs must then install exactly the packages that message named.
- After `make up`: every scrape target up, the specification's 30 metric names, the
  `make status` table; after `make down`: no process left. Then `make test`.
"""

from __future__ import annotations

import configparser
import io
import json
import os
import re
import shlex
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from . import ROOT, images
from .catalog import SPECIFIED
from .engine import podman_env
from .engine import up as engine_up
from .settings import StackError

BEGIN = "<!-- quick-start"
END = "<!-- quick-start:end -->"
USER = "newcomer"
CONTAINER = f"stack-acceptance-{os.getpid()}"
STEP_TIMEOUT = {"prerequisites": 900.0, "make up": 1200.0, "make test": 3600.0}
DEFAULT_TIMEOUT = 600.0
METRICS_TIMEOUT = 180.0
SUDO_LINE = re.compile(
    r"^\s*sudo apt-get update && sudo apt-get install -y --no-install-recommends "
    r"(?P<packages>[a-z0-9][a-z0-9 .+-]*)$",
    re.M,
)
INSTALLING = re.compile(r"^make \w+: installing \d+ Debian packages: (?P<packages>.+)$", re.M)


# ---- the README's quick start ------------------------------------------------------------


@dataclass
class QuickStart:
    prerequisites: str  # a shell line, run as root
    directory: str  # where `git clone` puts the tree
    makes: list[str] = field(default_factory=list)  # `make ...` lines, in order


def quick_start(text: str) -> QuickStart:
    """The commands between the README's markers: the prerequisites line, the clone, the make
    lines. Comments after `#` are dropped; anything else is an error naming the line."""
    begin, end = text.find(BEGIN), text.find(END)
    if begin < 0 or end < begin:
        raise StackError(f"README.md: no quick-start block ({BEGIN} ... {END})")
    fence = re.search(r"```(?:bash|sh)\n(.*?)```", text[begin:end], re.S)
    if fence is None:
        raise StackError("README.md: the quick-start block has no ```bash fence")
    prerequisites, directory, makes = None, None, []
    for raw in fence[1].splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        clone = re.fullmatch(r"git clone \S+?(?:\.git)?(?: \S+)? && cd (?P<dir>[\w.-]+)", line)
        if clone:
            directory = clone["dir"]
        elif line.startswith(("apt-get ", "sudo apt-get ")) and prerequisites is None:
            prerequisites = line.replace("sudo ", "")
        elif line.startswith("make "):
            makes.append(line)
        else:
            raise StackError(f"README.md: quick start: no rule to run {line!r}")
    if prerequisites is None or directory is None or not makes:
        raise StackError("README.md: quick start needs an apt-get line, a clone, make lines")
    return QuickStart(prerequisites, directory, makes)


# ---- the host's package sources ----------------------------------------------------------

APT_FILES = ("/etc/apt/sources.list", "/etc/apt/sources.list.d", "/etc/apt/apt.conf.d",
             "/etc/apt/preferences.d", "/etc/apt/trusted.gpg.d", "/etc/apt/keyrings")  # fmt: skip
PIP_CONFIGS = ("/etc/pip.conf", "/etc/xdg/pip/pip.conf", "~/.config/pip/pip.conf",
               "~/.pip/pip.conf")  # fmt: skip
PIP_PATH_KEYS = ("cert", "client-cert", "constraint", "find-links", "index-url",
                 "extra-index-url", "requirement")  # fmt: skip
CA_DIRS = ("/usr/local/share/ca-certificates",)


def _paths_in(value: str) -> Iterator[Path]:
    for token in value.split():
        token = token.removeprefix("file://")
        if token.startswith("/"):
            yield Path(token)


@dataclass
class Sources:
    files: dict[str, Path] = field(default_factory=dict)  # path in the container -> host file
    mounts: set[Path] = field(default_factory=set)  # host directories, mounted read-only
    env: dict[str, str] = field(default_factory=dict)

    def add(self, path: Path, inside: str | None = None) -> None:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file():
                    self.files[str(child)] = child
        elif path.is_file():
            self.files[inside or str(path)] = path

    def add_referenced(self, path: Path) -> None:
        if path.is_dir():  # package indexes and wheel folders: large, read-only
            # a PEP 503 index's pages link to ../../files/: its parent goes in whole
            self.mounts.add(path.parent if path.name == "simple" else path)
        else:
            self.add(path)


def host_sources() -> Sources:
    """The host's apt and pip configuration and what it names: copied files, mounted folders,
    PIP_* and proxy variables."""
    found = Sources()
    for name in APT_FILES:
        found.add(Path(name))
    for text in (p.read_text(errors="replace") for p in list(found.files.values())):
        for keyring in re.findall(r"(?:Signed-By:|signed-by=)\s*(/\S+?)[\]\s]", text + "\n"):
            found.add(Path(keyring))
    for name in PIP_CONFIGS:
        path = Path(name).expanduser()
        if not path.is_file():
            continue
        inside = name.replace("~", "/root")
        found.add(path, inside)
        config = configparser.ConfigParser(interpolation=None)
        config.read(path)
        for section in config.sections():
            for key, value in config[section].items():
                if key in PIP_PATH_KEYS:
                    for referenced in _paths_in(value):
                        found.add_referenced(referenced)
    for key, value in os.environ.items():
        if key.startswith("PIP_") or key.lower() in ("http_proxy", "https_proxy", "no_proxy"):
            found.env[key] = value
            if key.startswith("PIP_"):
                for referenced in _paths_in(value):
                    found.add_referenced(referenced)
    for name in CA_DIRS:
        found.add(Path(name))
    return found


def _tar(files: dict[str, Path]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for inside, path in sorted(files.items()):
            tar.add(path, arcname=inside.lstrip("/"), recursive=False)
    return buffer.getvalue()


# ---- the container -----------------------------------------------------------------------


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
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Run:  # fmt: skip
        """The shell line in the container, its output streamed (indented) as it comes."""
        env = [a for k, v in self.sources.env.items() for a in ("--env", f"{k}={v}")]
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

    def python(self, code: str) -> str:
        """A Python snippet in the container (Python is a prerequisite), its output."""
        done = self.run(f"python3 -c {shlex.quote(code)}", show=False, timeout=60)
        if done.code != 0:
            raise StackError(f"python3 in the container failed:\n{done.output}")
        return done.output


# ---- the checks --------------------------------------------------------------------------

_GET = """
import urllib.request
with urllib.request.urlopen({url!r}, timeout=10) as r:
    print(r.read().decode())
"""
_PROCESSES = """
import os
for pid in sorted(int(p) for p in os.listdir('/proc') if p.isdigit()):
    if pid in (1, os.getpid(), os.getppid()):
        continue
    try:
        argv = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\\0')
    except OSError:
        continue
    if argv[0] and argv[:2] != [b'sleep', b'infinity']:
        print(pid, b' '.join(argv).decode(errors='replace')[:200])
"""


def prometheus_get(machine: Machine, path: str, **params: str) -> dict:
    query = f"?{urlencode(params)}" if params else ""
    url = f"http://127.0.0.1:9090{path}{query}"
    return json.loads(machine.python(_GET.format(url=url)))  # type: ignore[no-any-return]


def check_targets(machine: Machine) -> str:
    active = prometheus_get(machine, "/api/v1/targets", state="active")["data"]["activeTargets"]
    down = [f"{t['labels']['job']} {t['scrapeUrl']}: {t['lastError']}" for t in active
            if t["health"] != "up"]  # fmt: skip
    if not active or down:
        raise StackError("not every scrape target is up:\n  " + "\n  ".join(down or ["none"]))
    return f"{len(active)} targets up ({', '.join(sorted({t['labels']['job'] for t in active}))})"


def check_metrics(machine: Machine, home: str) -> str:
    """Every specified name has data. The dev stack's traffic generator runs at 5 requests/s,
    where the rarest sample (an OAuth error) can take minutes: a second one at 40/s, as the
    integration suite's warm-up does, stopped by PID afterwards."""
    traffic = (
        f".venv/bin/python -m assistant.traffic --url http://127.0.0.1:8000 --rate 40 "
        f"--duration {METRICS_TIMEOUT:g} --token-file .run/dev/secrets/assistant_api_token "
        "--progress 3600 >/dev/null 2>&1 & echo $!"
    )
    pid = machine.run(traffic, workdir=home, show=False, timeout=30).output.strip()
    try:
        return _wait_for_metrics(machine)
    finally:
        machine.run(f"kill {pid}", show=False, timeout=30)


def _wait_for_metrics(machine: Machine) -> str:
    deadline = time.monotonic() + METRICS_TIMEOUT
    missing = list(SPECIFIED)
    while missing:
        names = "|".join(f"{n}|{n}_bucket|{n}_count|{n}_sum" for n in missing)
        found = prometheus_get(
            machine, "/api/v1/query", query=f'count by (__name__) ({{__name__=~"{names}"}})'
        )["data"]["result"]
        seen = {re.sub(r"_(bucket|count|sum)$", "", r["metric"]["__name__"]) for r in found}
        missing = [n for n in missing if n not in seen]
        if missing and time.monotonic() > deadline:
            raise StackError(f"no data after {METRICS_TIMEOUT:g} s for: {', '.join(missing)}")
        if missing:
            time.sleep(3)
    return f"all {len(SPECIFIED)} specified metric names have data"


def check_status(machine: Machine, home: str, user: str) -> str:
    done = machine.run("make status", user=user, workdir=home, show=False, timeout=120)
    rows = [line.split() for line in done.output.splitlines()
            if line.startswith("  ") and "targets up:" not in line]  # fmt: skip
    dead = [r[0] for r in rows[1:] if len(r) > 1 and r[1] != "running"]
    summary = next((line.strip() for line in done.output.splitlines() if "targets up:" in line),
                   "")  # fmt: skip
    if done.code != 0 or not rows or dead or not re.fullmatch(r"targets up: (\d+)/\1", summary):
        raise StackError(f"make status: exit {done.code}, not as expected:\n{done.output}")
    return f"make status: {len(rows) - 1} components running, {summary}"


def check_no_process(machine: Machine) -> str:
    left = machine.python(_PROCESSES).strip()
    if left:
        raise StackError(f"processes left after make down:\n{left}")
    return "make down: no process left"


def check_running(machine: Machine, home: str, user: str, metrics: bool) -> list[str]:
    """The stack `make up` left running, then `make down` and nothing left behind."""
    found = [check_targets(machine)]
    if metrics:
        found.append(check_metrics(machine, home))
    found.append(check_status(machine, home, user))
    down = machine.run("make down", user=user, workdir=home, show=False, timeout=120)
    if down.code != 0:
        raise StackError(f"make down failed:\n{down.output}")
    found.append(check_no_process(machine))
    return [f"as {user}: {line}" for line in found]


def installed_by(output: str) -> set[str]:
    return {p for m in INSTALLING.finditer(output) for p in m["packages"].split()}


def check_refusal(run: Run) -> set[str]:
    """A non-root make line: non-zero, one sudo line, nothing written. Its packages."""
    lines = [line for line in run.output.splitlines() if not line.startswith("make: *** ")]
    commands = SUDO_LINE.findall(run.output)
    if run.code == 0 or len(commands) != 1 or len(lines) != 2:
        raise StackError(f"as {USER}, {run.command!r} (exit {run.code}) should print one "
                         f"message with one sudo apt-get command:\n{run.output}")  # fmt: skip
    return set(commands[0].split())


# ---- the whole check ---------------------------------------------------------------------


def _git(*args: str) -> bytes:
    done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, check=False,
                          timeout=120)  # fmt: skip
    if done.returncode != 0:
        raise StackError(f"git {' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
    return done.stdout


def _say(text: str) -> None:
    print(f"acceptance: {text}", flush=True)


def _seconds(pattern: str, output: str) -> float:
    found = re.findall(pattern, output)
    return sum(float(x) for x in found)


def run(ref: str = "HEAD", keep: bool = False) -> int:
    """The check on the committed tree ``ref`` (its README says what to run)."""
    begun = time.monotonic()
    commit = _git("rev-parse", "--short", f"{ref}^{{commit}}").decode().strip()
    steps = quick_start(_git("show", f"{commit}:README.md").decode())
    tree = _git("archive", "--format=tar", commit)
    _say(f"the quick start read from README.md at {commit}:")
    for line in [steps.prerequisites, f"(git clone into {steps.directory})", *steps.makes]:
        _say(f"  {line}")
    engine_up(say=_say)
    images.build(say=_say, only={"base"})
    sources = host_sources()
    _say(f"host package sources: {len(sources.files)} files copied, "
         f"{len(sources.mounts)} folders mounted, {len(sources.env)} variables")  # fmt: skip
    timings: list[tuple[str, float]] = []
    results: list[str] = []
    machine = Machine(sources)
    try:
        machine.run("rm -rf /etc/apt/sources.list /etc/apt/sources.list.d", show=False)
        machine.put(_tar(sources.files))

        _say(f"as root: {steps.prerequisites}")
        prerequisites = machine.run(
            steps.prerequisites, show=False, timeout=STEP_TIMEOUT["prerequisites"]
        )
        if prerequisites.code != 0:
            raise StackError(f"the prerequisites failed (exit {prerequisites.code}):\n"
                             f"{prerequisites.output[-3000:]}")  # fmt: skip
        timings.append(("prerequisites (README's first line)", prerequisites.seconds))

        # another user, on the bare machine: told what to install, nothing touched
        machine.run(f"useradd --create-home {USER}", show=False)
        user_home = f"/home/{USER}/{steps.directory}"
        machine.run(f"mkdir {user_home}", user=USER, show=False)
        machine.put(tree, into=user_home, user=USER)
        refused: dict[str, set[str]] = {}
        for line in steps.makes:
            _say(f"as {USER}: {line}")
            attempt = machine.run(line, user=USER, workdir=user_home, timeout=120)
            refused[line] = check_refusal(attempt)
            left = machine.run(f"ls -d {user_home}/.run {user_home}/.venv", show=False)
            if left.code == 0:
                raise StackError(f"as {USER}, {line!r} left files behind:\n{left.output}")
            results.append(f"as {USER}: {line!r} exit {attempt.code}, asked for "
                           f"{len(refused[line])} packages, wrote nothing")  # fmt: skip

        # root, as the README says
        home = f"/root/{steps.directory}"
        machine.run(f"mkdir {home}", show=False)
        machine.put(tree, into=home)
        installed: set[str] = set()
        for line in steps.makes:
            _say(f"as root: {line}")
            done = machine.run(line, workdir=home, timeout=STEP_TIMEOUT.get(line, DEFAULT_TIMEOUT))
            if done.code != 0:
                raise StackError(f"{line!r} failed (exit {done.code})")
            now = installed_by(done.output)
            installed |= now
            if installed != refused[line]:
                raise StackError(f"{line!r} installed {sorted(installed)} in all, but told "
                                 f"{USER} to install {sorted(refused[line])}")  # fmt: skip
            packages = _seconds(r"Debian packages installed in ([\d.]+) s", done.output)
            venv = _seconds(r"python environment: ready in ([\d.]+) s", done.output)
            if now:
                timings.append((f"{line}: Debian packages ({len(now)})", packages))
            if venv:
                timings.append((f"{line}: Python environment", venv))
            if line.split()[1] == "up":
                timings.append(
                    (f"{line}: start to every target up", done.seconds - packages - venv)
                )
                timings.append((f"{line}: bare machine to every target up", done.seconds))
                results += check_running(machine, home, "root", metrics=True)
            else:
                timings.append((f"{line}: set-up", packages + venv))
                timings.append((f"{line}: in all", done.seconds))
        # the message said "then run it again": the other user's stack, as that user
        line = "make up"
        _say(f"as {USER}, now that root installed the packages: {line}")
        done = machine.run(line, user=USER, workdir=user_home, timeout=STEP_TIMEOUT[line])
        if done.code != 0 or installed_by(done.output):
            raise StackError(f"as {USER}, {line!r} failed (exit {done.code}) or installed")
        timings.append((f"as {USER}: {line} (.venv and start)", done.seconds))
        results += check_running(machine, user_home, USER, metrics=False)
    finally:
        if keep:
            _say(f"container {CONTAINER} kept (podman rm -f {CONTAINER})")
        else:
            machine.close()
    _say("passed:")
    for line in results:
        _say(f"  {line}")
    _say("cold timings:")
    width = max(len(name) for name, _ in timings)
    for name, seconds in timings:
        _say(f"  {name:{width}}  {seconds:7.1f} s")
    _say(f"in all {time.monotonic() - begun:.1f} s")
    return 0
