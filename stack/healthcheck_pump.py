"""Runs the containers' healthchecks for the local engine. Podman 4.3 schedules them with
systemd timers; without systemd they never run, so health stays "starting" and Compose's
``--wait`` and ``service_healthy`` hang. This loop runs ``podman healthcheck run`` for each
container, ``CONCURRENT`` at a time: every second until it is healthy (starting, or
unhealthy), then at its own configured interval.

    python -m stack.healthcheck_pump --engine-pid PID --engine-start-time TICKS

It exits when the engine process (the podman API service) is gone.
"""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import Future, ThreadPoolExecutor

from stack.processes import followed_engine

STARTING_PERIOD = 1.0
DEFAULT_INTERVAL = 30.0
TICK = 1.0
# checks at a time: a slow one (a container starting) no longer holds up the others' (one at
# a time, a round of a dozen took seconds); each is a short command, 0.05 s of CPU or so
CONCURRENT = 4


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=60, check=False
    )


def containers() -> dict[str, str]:
    """{container id: health} for running containers that have a healthcheck."""
    done = podman("ps", "--format", "{{.ID}} {{.Status}}")
    found = {}
    for line in done.stdout.splitlines():
        cid, _, status = line.partition(" ")
        for health in ("starting", "healthy", "unhealthy"):
            if f"({health})" in status:
                found[cid] = health
    return found


def interval(cid: str) -> float:
    done = podman("inspect", "--format", "{{.Config.Healthcheck.Interval}}", cid)
    try:
        return max(int(done.stdout.strip()) / 1e9, STARTING_PERIOD)
    except ValueError:
        return DEFAULT_INTERVAL


def main() -> None:
    engine = followed_engine(__doc__.splitlines()[0])
    due: dict[str, float] = {}
    intervals: dict[str, float] = {}
    running: dict[str, Future[subprocess.CompletedProcess[str]]] = {}
    with ThreadPoolExecutor(CONCURRENT, thread_name_prefix="healthcheck") as pool:
        while engine.alive():
            now = time.monotonic()
            found = containers()
            for cid, health in found.items():
                if now < due.get(cid, 0.0) or (cid in running and not running[cid].done()):
                    continue
                if cid not in intervals:
                    intervals[cid] = interval(cid)
                # every second until healthy: a restarted container keeps the health of its
                # last run ("unhealthy") until checks pass again, and `up --wait` waits for that
                period = intervals[cid] if health == "healthy" else STARTING_PERIOD
                due[cid] = now + period
                running[cid] = pool.submit(podman, "healthcheck", "run", cid)
            for gone in set(due) - set(found):
                due.pop(gone, None)
                intervals.pop(gone, None)
                running.pop(gone, None)
            time.sleep(TICK)


if __name__ == "__main__":
    main()
