"""Benchmark (`make bench`): scrape latency of app_metrics' metrics listener (its own socket and
threads) against the in-app ``/metrics`` of the same server, in the same run.

One uvicorn process on 127.0.0.1 serves the server tests' app (``tests/server/app.py``: the
HTTP metrics, a scrape-time source and a health check) with the listener on. Two scrapers,
one per endpoint, each GET on a new connection every 0.1 s (timeout 10 s, Prometheus'
default), through three phases:

1. idle;
2. saturated: a load generator (another process) keeps ``CONNECTIONS`` connections asking
   back to back, so the event loop always has that many requests waiting: offered load far
   above what one process serves;
3. blocked: ``/block?seconds=5`` (``time.sleep`` in an async route) three times in a row, the
   event loop running nothing for 15 s.

Targets (issue 16): listener p99 under 50 ms saturated, under 100 ms with the loop blocked.
``python bench/listener.py [--seconds 20]``; progress on stderr, figures on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stack.processes import free_ports  # noqa: E402

HOST = "127.0.0.1"
CONNECTIONS = 64
LOAD_NICE = 10  # the load generator's niceness
SCRAPE_EVERY = 0.1
SCRAPE_TIMEOUT = 10.0
BLOCKS = 3
BLOCK_SECONDS = 5
TARGETS = {"saturated": 50.0, "blocked": 100.0}  # listener p99, ms


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def get(port: int, path: str, timeout: float = SCRAPE_TIMEOUT) -> tuple[float, int, bytes]:
    """GET on a new connection: (seconds, status, body); status 0 on a timeout or error."""
    begin = time.perf_counter()
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        return time.perf_counter() - begin, response.status, body
    except OSError:
        return time.perf_counter() - begin, 0, b""
    finally:
        connection.close()


class Scraper(threading.Thread):
    """Scrapes one endpoint every SCRAPE_EVERY s until stopped; keeps each phase's timings."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.phase = ""
        self.timings: dict[str, list[float]] = {}
        self.failed: dict[str, int] = {}
        self.stopped = threading.Event()

    def run(self) -> None:
        for _ in range(100_000):  # bounded: stop() ends it long before
            if self.stopped.is_set():
                return
            phase = self.phase
            seconds, status, _ = get(self.port, "/metrics")
            if phase and phase == self.phase:  # a scrape that spans two phases counts in none
                if status == 200:
                    self.timings.setdefault(phase, []).append(seconds)
                else:
                    self.failed[phase] = self.failed.get(phase, 0) + 1
            self.stopped.wait(SCRAPE_EVERY)


def lag(port: int) -> tuple[float, float]:
    """event_loop_lag_seconds (sum, count) from the listener."""
    text = get(port, "/metrics")[2].decode()
    found = {"sum": 0.0, "count": 0.0}
    for family in text_string_to_metric_families(text):
        if family.name == "event_loop_lag_seconds":
            for s in family.samples:
                kind = s.name.rsplit("_", 1)[1]
                if kind in found:
                    found[kind] += s.value
    return found["sum"], found["count"]


async def _load(port: int, seconds: float, connections: int) -> int:
    """``connections`` keep-alive connections, each asking back to back, for ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    done = 0

    async def one(k: int) -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection(HOST, port)
        for n in range(1_000_000):
            if loop.time() >= deadline:
                break
            writer.write(b"GET /items/%d HTTP/1.1\r\nHost: bench\r\n\r\n" % (k * 1000 + n % 1000))
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
            await reader.readexactly(int(length[1]) if length else 0)
            done += 1
        writer.close()

    await asyncio.wait_for(
        asyncio.gather(*(one(k) for k in range(connections)), return_exceptions=True),
        seconds + 30,
    )
    return done


def start_server(
    app_port: int, metrics_port: int, log: Path, switch: float | None = None
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["TEST_APP_METRICS_PORT"] = str(metrics_port)
    if switch is not None:  # the server's sys.setswitchinterval
        env["TEST_APP_SWITCH_INTERVAL"] = str(switch)
    command = [sys.executable, "-m", "uvicorn", "tests.server.app:app", "--host", HOST,
               "--port", str(app_port), "--no-access-log", "--log-level", "warning"]  # fmt: skip
    with log.open("wb") as out:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    for _ in range(300):  # up to 15 s
        if server.poll() is not None:
            raise RuntimeError(f"the server exited:\n{log.read_text()[-2000:]}")
        if get(metrics_port, "/metrics", 1.0)[1] == 200 and get(app_port, "/metrics", 1.0)[1]:
            return server
        time.sleep(0.05)
    raise RuntimeError("the server did not answer within 15 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=20.0, help="idle and saturated phases")
    p.add_argument("--switch-interval", type=float, default=None,
                   help="the server's sys.setswitchinterval, s (default 0.005)")  # fmt: skip
    p.add_argument(
        "--load", nargs=3, metavar=("PORT", "SECONDS", "CONNECTIONS"), help=argparse.SUPPRESS
    )  # fmt: skip (the load generator's own process)
    args = p.parse_args()
    if args.load:
        port, seconds, connections = int(args.load[0]), float(args.load[1]), int(args.load[2])
        print(asyncio.run(_load(port, seconds, connections)))
        return 0

    app_port, metrics_port = free_ports(2)
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-listener-{app_port}.log"
    say(f"uvicorn on {HOST}:{app_port}, metrics listener on :{metrics_port} (log {log})")
    server = start_server(app_port, metrics_port, log, args.switch_interval)
    listener, in_app = Scraper(metrics_port), Scraper(app_port)
    served = 0.0
    lag_mean = 0.0
    try:
        for scraper in (listener, in_app):
            scraper.start()
        for scraper in (listener, in_app):
            scraper.phase = "idle"
        say(f"idle: {args.seconds / 4:g} s")
        time.sleep(args.seconds / 4)

        say(f"saturated: {CONNECTIONS} connections back to back for {args.seconds:g} s")
        before = lag(metrics_port)
        # niced: it stands for clients on other machines, not for a neighbour of the server
        load = subprocess.Popen(
            ["nice", "-n", str(LOAD_NICE), sys.executable, __file__, "--load", str(app_port),
             str(args.seconds), str(CONNECTIONS)], stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(1)  # the load is on
        for scraper in (listener, in_app):
            scraper.phase = "saturated"
        output = load.communicate(timeout=args.seconds + 60)[0]
        for scraper in (listener, in_app):
            scraper.phase = ""
        served = int(output.strip() or 0) / args.seconds
        after = lag(metrics_port)
        lag_mean = (after[0] - before[0]) / max(1.0, after[1] - before[1]) * 1000
        time.sleep(1)

        say(f"blocked: /block?seconds={BLOCK_SECONDS}, {BLOCKS} times in a row")
        for scraper in (listener, in_app):
            scraper.phase = "blocked"
        for _ in range(BLOCKS):
            get(app_port, f"/block?seconds={BLOCK_SECONDS}", BLOCK_SECONDS + 10)
        for scraper in (listener, in_app):
            scraper.phase = ""
        time.sleep(SCRAPE_TIMEOUT / 2)  # in-app scrapes still queued come back
    finally:
        for scraper in (listener, in_app):
            scraper.stopped.set()
        stop(server)
        for scraper in (listener, in_app):
            scraper.join(SCRAPE_TIMEOUT + 1)

    print("\nMetrics listener vs. in-app /metrics: one uvicorn process on 127.0.0.1, a scrape")
    print(f"on a new connection every {SCRAPE_EVERY:g} s per endpoint, in one run")
    print(f"(saturated: {CONNECTIONS} connections back to back, {served:,.0f} requests/s served,")
    print(f"event-loop lag {lag_mean:.1f} ms per heartbeat on average; blocked: {BLOCKS} × "
          f"{BLOCK_SECONDS} s; switch interval "
          f"{(args.switch_interval or sys.getswitchinterval()) * 1000:g} ms)\n")  # fmt: skip
    print(f"  {'phase':<10}{'endpoint':<12}{'scrapes':>8}{'failed':>8}{'p50 ms':>10}"
          f"{'p99 ms':>10}{'max ms':>10}   target (listener p99)")  # fmt: skip
    for phase in ("idle", "saturated", "blocked"):
        for name, scraper in (("listener", listener), ("in-app", in_app)):
            times = [t * 1000 for t in scraper.timings.get(phase, [])]
            failed = scraper.failed.get(phase, 0)
            figures = (
                f"{percentile(times, 50):10.1f}{percentile(times, 99):10.1f}{max(times):10.1f}"
                if times else f"{'-':>10}{'-':>10}{'-':>10}"
            )  # fmt: skip
            target = TARGETS.get(phase) if name == "listener" else None
            verdict = ""
            if target is not None and times:
                ok = percentile(times, 99) < target
                verdict = f"   < {target:g} ms: {'met' if ok else 'MISSED'}"
            print(f"  {phase:<10}{name:<12}{len(times):>8}{failed:>8}{figures}{verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
