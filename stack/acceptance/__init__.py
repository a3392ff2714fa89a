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
  `make status` table; after `make down`: no process left. Then `make test`; with
  ``report``, its JUnit report is copied out of the container (CI checks it: the suite runs
  once, on the bare machine, not a second time on the host).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from .. import ROOT, images
from ..engine import up as engine_up
from ..settings import StackError
from .checks import USER, check_refusal, check_running, installed_by
from .machine import CONTAINER, DEFAULT_TIMEOUT, Machine, Run
from .readme import BEGIN, END, QuickStart, quick_start
from .sources import Sources, host_sources, tar_of

__all__ = ["BEGIN", "END", "QuickStart", "Run", "Sources", "check_refusal", "quick_start", "run"]

STEP_TIMEOUT = {"prerequisites": 900.0, "make up": 1200.0, "make test": 3600.0}
JUNIT = "/tmp/acceptance-junit.xml"  # in the container; pytest reads PYTEST_ADDOPTS


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


def run(ref: str = "HEAD", keep: bool = False, report: Path | None = None) -> int:
    """The check on the committed tree ``ref`` (its README says what to run); ``report``:
    where the JUnit report of its `make test` goes."""
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
    # stopped by its PID (CI's limit, a person), it still removes its container
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("acceptance: stopped (SIGTERM)"))
    try:
        machine.run("rm -rf /etc/apt/sources.list /etc/apt/sources.list.d", show=False)
        machine.put(tar_of(sources.files))

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
            tested = report is not None and line.split()[1] == "test"
            junit = {"PYTEST_ADDOPTS": f"--junitxml={JUNIT}"} if tested else {}
            timeout = STEP_TIMEOUT.get(line, DEFAULT_TIMEOUT)
            done = machine.run(line, workdir=home, timeout=timeout, env=junit)
            if tested and report is not None:
                report.write_bytes(machine.read(JUNIT))
                _say(f"the JUnit report of {line!r} copied to {report}")
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
