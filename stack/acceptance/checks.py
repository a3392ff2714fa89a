"""What the acceptance check looks at on the bare machine, as a user would: the scrape targets,
the specification's metric names, `make status`, the processes left after `make down`, and
what another user is told."""

from __future__ import annotations

import json
import re
import time
from urllib.parse import urlencode

from ..catalog import SPECIFIED
from ..settings import StackError
from .machine import Machine, Run

USER = "newcomer"
METRICS_TIMEOUT = 180.0
SUDO_LINE = re.compile(
    r"^\s*sudo apt-get update && sudo apt-get install -y --no-install-recommends "
    r"(?P<packages>[a-z0-9][a-z0-9 .+-]*)$",
    re.M,
)
INSTALLING = re.compile(r"^make \w+: installing \d+ Debian packages: (?P<packages>.+)$", re.M)


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
