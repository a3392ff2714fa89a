"""Scrapes of the API in trouble (`make bench`), as Prometheus itself saw them: its own
``scrape_duration_seconds`` for the ``personal_assistant_api`` job (the API and the worker,
scraped on their metrics listener, app_metrics/listener.py: port 9464), p99 and max, and
``min_over_time(up)``, on each runtime (the dev stack, scraped every second):

a. the API saturated: ``--generators`` traffic generators (``python -m assistant.traffic
   --rate 500``, niced: they stand for clients on other machines) for ``--seconds``, an
   offered load well above what the one API process serves on two cores;
b. the API's event loop blocked ``--blocks`` times for 5 s (``POST /debug/block?seconds=5``,
   the dev stack's debug route), a few seconds apart.

Targets: p99 under 50 ms saturated, under 100 ms blocked; ``up`` stays 1 throughout.

``python bench/scrape.py [--runtimes native,compose] [--seconds 60] [--blocks 5]
[--generators 2]``; progress on stderr, figures on stdout. Compose runs on the local engine
(``make engine``, ``make images``) where no Docker engine answers, as a project of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.runtimes import ComposeStack, NativeStack, Stack

JOB = "personal_assistant_api"
TARGETS = {"saturated": 0.050, "blocked": 0.100}  # scrape_duration_seconds p99, seconds
BLOCK_SECONDS = 5
BLOCK_GAP = 3.0  # seconds between two blocks: the loop catches up, as after a real one
SETTLE = 3.0  # seconds for the last scrape of a phase to reach Prometheus' storage


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def query(stack: Stack, expr: str, at: float) -> float:
    """The single value of ``expr`` at ``at`` (NaN where it has none)."""
    url = f"{stack.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr, "time": at})
    with urllib.request.urlopen(url, timeout=30) as response:
        result = json.load(response)["data"]["result"]
    return float(result[0]["value"][1]) if result else math.nan


def seen(stack: Stack, begin: float, end: float) -> dict[str, float]:
    """What Prometheus recorded of the job between ``begin`` and ``end``: its worst target's
    p99 and max scrape duration (seconds), each component's p99, the lowest ``up``, the API's
    scrapes, and how many requests per second the API answered."""
    time.sleep(SETTLE)
    window = f"{math.ceil(end - begin)}s"
    job = f'job="{JOB}"'
    return {
        "p99": query(
            stack, f"max(quantile_over_time(0.99, scrape_duration_seconds{{{job}}}[{window}]))", end
        ),
        "max": query(stack, f"max(max_over_time(scrape_duration_seconds{{{job}}}[{window}]))", end),
        **{
            f"{component} p99": query(
                stack,
                f"max(quantile_over_time(0.99, scrape_duration_seconds{{{job},"
                f'component="{component}"}}[{window}]))',
                end,
            )
            for component in ("api", "worker")
        },
        "up": query(stack, f"min(min_over_time(up{{{job}}}[{window}]))", end),
        "scrapes": query(
            stack, f'max(count_over_time(up{{{job},component="api"}}[{window}]))', end
        ),
        "served": query(
            stack,
            f'sum(increase(http_requests_total{{{job},component="api"}}[{window}])) / '
            f"{end - begin:.3f}",
            end,
        ),
    }


def saturated(stack: Stack, generators: int, seconds: int) -> dict[str, float]:
    """The traffic mix at 500/s from each of ``generators`` processes for ``seconds``."""
    argv = ["nice", "-n", "10", sys.executable, "-m", "assistant.traffic", "--url", stack.api,
            "--rate", "500", "--duration", str(seconds), "--progress", "3600",
            "--token-file", str(stack.api_token_file)]  # fmt: skip
    with contextlib.ExitStack() as files:
        logs = [files.enter_context(tempfile.TemporaryFile("w+")) for _ in range(generators)]
        begin = time.time()
        running = [subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT) for log in logs]
        try:
            for process in running:
                process.wait(timeout=seconds + 60)
        finally:
            for process in running:  # only if the wait above failed: ours, by PID
                if process.poll() is None:
                    process.kill()
                    process.wait(timeout=10)
        end = time.time()
        for log in logs:
            log.seek(0)
            summary = next((ln for ln in log.read().splitlines() if " requests in " in ln), "")
            say(f"    generator: {summary.strip() or '(no summary)'}")
    return seen(stack, begin, end) | {"asked": 500.0 * generators}


def blocked(stack: Stack, blocks: int) -> dict[str, float]:
    """``blocks`` times ``POST /debug/block?seconds=5`` (each answers once the loop is free
    again), ``BLOCK_GAP`` apart."""
    token = Path(stack.api_token_file).read_text().strip()
    begin = time.time()
    for number in range(blocks):
        request = urllib.request.Request(
            f"{stack.api}/debug/block?seconds={BLOCK_SECONDS}", method="POST",
            headers={"Authorization": f"Bearer {token}"},
        )  # fmt: skip
        started = time.monotonic()
        with urllib.request.urlopen(request, timeout=BLOCK_SECONDS + 30) as response:
            status = response.status
        say(f"    block {number + 1}/{blocks}: {status} after {time.monotonic() - started:.1f} s")
        time.sleep(BLOCK_GAP)
    return seen(stack, begin, time.time())


def run(make: type[Stack], args: argparse.Namespace) -> dict[str, dict[str, float]]:
    stack = make()
    try:
        say(f"{stack.runtime}: the API saturated, {args.generators} x 500/s for {args.seconds} s")
        found = {"saturated": saturated(stack, args.generators, args.seconds)}
        say(f"{stack.runtime}: the event loop blocked {BLOCK_SECONDS} s, {args.blocks} times")
        found["blocked"] = blocked(stack, args.blocks)
        return found
    finally:
        stack.close()


def report(runtime: str, found: dict[str, dict[str, float]]) -> None:
    print(f"\n  {runtime}: job {JOB} (API and worker on their metrics listener)")
    for phase, figures in found.items():
        target = TARGETS[phase]
        verdict = "met" if figures["p99"] < target and figures["up"] == 1 else "MISSED"
        extra = (
            f", API served {figures['served']:.0f}/s of {figures['asked']:.0f}/s asked"
            if phase == "saturated" else ""
        )  # fmt: skip
        print(
            f"    {phase:9}  scrape p99 {figures['p99'] * 1000:6.1f} ms (target < "
            f"{target * 1000:.0f} ms), max {figures['max'] * 1000:6.1f} ms, "
            f"min up {figures['up']:.0f} (target 1): {verdict}  "
            f"[p99 API {figures['api p99'] * 1000:.1f} ms, worker "
            f"{figures['worker p99'] * 1000:.1f} ms; {figures['scrapes']:.0f} scrapes of the API"
            f"{extra}]"
        )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runtimes", default="native,compose", help="native, compose or both")
    p.add_argument("--seconds", type=int, default=60, help="of saturation")
    p.add_argument("--blocks", type=int, default=5, help="5 s blocks of the event loop")
    p.add_argument("--generators", type=int, default=2, help="traffic generators at 500/s")
    args = p.parse_args()
    makers = {"native": NativeStack, "compose": ComposeStack}
    results = {}
    for runtime in args.runtimes.split(","):
        if runtime == "compose":
            os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
        results[runtime] = run(makers[runtime], args)
    print("\nScrapes in trouble (the dev stack, Prometheus scraping every second)")
    for runtime, found in results.items():
        report(runtime, found)
    return 0


if __name__ == "__main__":
    sys.exit(main())
