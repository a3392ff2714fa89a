"""Stack figures (`make bench`): the native runtime and Compose on the local engine (Podman,
local images) side by side on this machine, medians of several runs.

0. Compose's cold set-up: the local engine started (and its packages installed if missing),
   then every local image built from nothing, in a throwaway image store (the machine's own
   images are left alone).
1. Up (packages present, empty data) to every container healthy (Compose) and to every
   target up.
2. Fault to notification, and restart to resolution, for each fault of the integration suite.
3. The sample service's `/metrics` latency (p50, p99) while Prometheus scrapes every second
   (the dev profile) and the traffic generator sends its mix at 50/s and at its full rate
   (500/s asked: more than one API process on two cores serves, so it runs saturated).
4. The API process' memory (RSS) and its `/metrics` size before and after N cheap requests
   (bad tokens, unknown users, unknown paths): the metrics must not grow with traffic.

Figures 3 and 4 are the application's and are measured on the native runtime.

``python bench/stack.py [--runs 3] [--fault-runs 5] [--requests 100000]
[--runtimes native,compose] [--no-cold]``;
progress on stderr, figures on stdout.
Targets on this machine: every target up within 10 s (Compose: 15 s), each fault delivered
within 15 s of its rule's `for:` (20 of 20 per runtime),
`/metrics` p99 under 100 ms, memory flat under traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stack import engine, images
from tests.integration.faults import FAULTS, inject
from tests.integration.runtimes import ComposeStack, NativeStack, Stack

DELIVERY_TARGET = 15.0  # seconds from a fault to its notification, beyond the rule's for:


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def metrics_get(stack: NativeStack, token: str) -> tuple[float, int]:
    request = urllib.request.Request(
        f"{stack.api}/metrics", headers={"Authorization": f"Bearer {token}"}
    )
    begin = time.perf_counter()
    with urllib.request.urlopen(request, timeout=10) as response:
        size = len(response.read())
    return time.perf_counter() - begin, size


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def bench_up(make: type[Stack], runs: int) -> tuple[list[float], list[float], Stack]:
    """Up ``runs`` times (each from empty data); the last stack stays up."""
    times, healthy, stack = [], [], None
    for run in range(runs):
        if stack is not None:
            stack.close()
        begin = time.monotonic()
        stack = make()
        times.append(time.monotonic() - begin)
        healthy.append(getattr(stack, "healthy_after", float("nan")))
        say(f"  {stack.runtime} up {run + 1}/{runs}: every target up after {times[-1]:.1f} s")
    assert stack is not None
    return times, healthy, stack


def bench_faults(stack: Stack, runs: int) -> dict[str, tuple[list[float], list[float]]]:
    """Every fault ``runs`` times: (delivery less the rule's `for:`, resolution after the
    restart) per fault."""
    faults: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in FAULTS}
    for run in range(runs):
        for name, outcome in inject(stack, FAULTS).items():
            faults[name][0].append(outcome.beyond_for)
            faults[name][1].append(outcome.resolved_after)
            say(
                f"  {stack.runtime}: {name} {run + 1}/{runs}: delivered "
                f"{outcome.delivered_after:.1f} s ({outcome.beyond_for:.1f} s after its for:), "
                f"resolved {outcome.resolved_after:.1f} s"
            )
    return faults


def cold_setup() -> dict[str, float]:
    """The local engine's start (packages installed first when missing) and every local image
    built from nothing, into a throwaway image store."""
    figures = {}
    was_running = engine.answers()
    begin = time.monotonic()
    if not was_running:
        engine.up(say)
    figures["engine"] = float("nan") if was_running else time.monotonic() - begin
    with tempfile.TemporaryDirectory(prefix="stack-bench-store-") as store:
        conf = Path(store) / "storage.conf"
        conf.write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{store}/graph"\nrunroot = "{store}/run"\n'
        )
        saved = os.environ.get("CONTAINERS_STORAGE_CONF")
        os.environ["CONTAINERS_STORAGE_CONF"] = str(conf)
        begin = time.monotonic()
        try:
            images.build(lambda line, **_: say(f"  {line}"))
        finally:
            figures["images"] = time.monotonic() - begin
            if saved is None:
                os.environ.pop("CONTAINERS_STORAGE_CONF")
            else:
                os.environ["CONTAINERS_STORAGE_CONF"] = saved
            # overlay layers may hold mounts: podman unmounts what its store still uses
            subprocess.run(["podman", "--storage-opt", "", "system", "reset", "--force"],
                           env={**engine.podman_env(), "CONTAINERS_STORAGE_CONF": str(conf)},
                           capture_output=True, check=False)  # fmt: skip
    return figures


def latency_under_traffic(stack: NativeStack, token: str, rate: int, seconds: int) -> dict:
    """/metrics timed every 0.2 s while the traffic generator sends the mix at ``rate``."""
    secrets = stack.root / "dev" / "secrets"
    traffic = subprocess.Popen(
        [sys.executable, "-m", "assistant.traffic", "--url", stack.api, "--rate", str(rate),
         "--duration", str(seconds), "--progress", "3600",
         "--token-file", str(secrets / "assistant_api_token"),
         "--redis-url", f"redis://127.0.0.1:{stack.ports['redis']}/0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    latencies: list[float] = []
    while traffic.poll() is None:
        latencies.append(metrics_get(stack, token)[0])
        time.sleep(0.2)
    output = traffic.communicate()[0]
    summary = next((line for line in output.splitlines() if " requests in " in line), "?")
    achieved = float(summary.split("(")[1].split("/s")[0]) if "(" in summary else 0.0
    return {"rate": achieved, "p50": percentile(latencies, 50) * 1000,
            "p99": percentile(latencies, 99) * 1000, "samples": len(latencies)}  # fmt: skip


async def _drive(base: str, requests: int, concurrency: int = 32) -> None:
    """Cheap instrumented requests: a bad token (401), unknown users (404), unknown paths
    (404, <unmatched>): what a crawler or a broken client sends, in any amount."""
    import httpx

    paths = ["/me", "/users/{n}", "/no/such/path/{n}", "/users/{n}/sms"]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(requests):
        queue.put_nowait(n)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            n = queue.get_nowait()
            path = paths[n % len(paths)].format(n=n)
            await client.get(path, headers={"Authorization": f"Bearer wrong-{n % 7}"})

    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))


def memory_after(stack: NativeStack, token: str, requests: int) -> dict:
    api_pid = stack._state()["components"]["api"]["pid"]
    before_rss, (_, before_size) = rss_kib(api_pid), metrics_get(stack, token)
    begin = time.monotonic()
    asyncio.run(_drive(stack.api, requests))
    took = time.monotonic() - begin
    time.sleep(1)
    after_rss, (_, after_size) = rss_kib(api_pid), metrics_get(stack, token)
    return {"rate": requests / took, "rss_before": before_rss / 1024,
            "rss_after": after_rss / 1024, "size_before": before_size / 1024,
            "size_after": after_size / 1024}  # fmt: skip


def median(values: list[float]) -> str:
    return f"{statistics.median(values):5.1f} s" if values else "    -  "


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3, help="runs per figure (median)")
    p.add_argument("--fault-runs", type=int, default=5,
                   help="rounds of the four faults (5: 20 deliveries per runtime)")  # fmt: skip
    p.add_argument("--requests", type=int, default=100_000, help="requests of the load run")
    p.add_argument("--runtimes", default="native,compose", help="native, compose or both")
    p.add_argument("--no-cold", action="store_true", help="skip the cold image build (~4 min)")
    args = p.parse_args()
    runtimes = args.runtimes.split(",")
    cold: dict[str, float] = {}
    if "compose" in runtimes and not args.no_cold:
        say("compose: cold set-up (engine, every image from nothing in a throwaway store)")
        cold = cold_setup()
    up: dict[str, tuple[list[float], list[float]]] = {}
    faults: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    if "compose" in runtimes:
        say(f"compose on the local engine: {args.runs} up runs")
        engine.up(say)
        images.build(lambda line, **_: say(f"  {line}"))
        times, healthy, stack = bench_up(ComposeStack, args.runs)
        try:
            up["compose"] = (times, healthy)
            faults["compose"] = bench_faults(stack, args.fault_runs)
        finally:
            stack.close()
    if "native" in runtimes:
        say(f"native stack: {args.runs} up runs")
        times, healthy, native = bench_up(NativeStack, args.runs)
        assert isinstance(native, NativeStack)
        up["native"] = (times, [])
        try:
            faults["native"] = bench_faults(native, args.fault_runs)
            token = (native.root / "dev" / "secrets" / "metrics_token").read_text().strip()
            native.stop("traffic")  # the dev generator (5/s) gives way to the bench's own load
            loads = {}
            for rate in (50, 500):
                say(f"/metrics latency: the traffic mix at up to {rate}/s for 30 s")
                loads[rate] = latency_under_traffic(native, token, rate, 30)
            say(f"memory: {args.requests:,} requests")
            memory = memory_after(native, token, args.requests)
        finally:
            native.close()

    names = [r for r in ("native", "compose") if r in up]
    header = "".join(
        f"{'native' if r == 'native' else 'compose (local engine)':>24}" for r in names
    )
    print(f"\nStack figures (dev profile; median of {args.runs} runs)\n")
    if cold:
        engine_start = (
            "already running" if cold["engine"] != cold["engine"] else f"{cold['engine']:.1f} s"
        )
        print(f"  compose cold set-up: engine start {engine_start}; every local image built from "
              f"nothing {cold['images']:.1f} s")  # fmt: skip
    print(f"\n  {'':44}{header}")
    rows = [("up to every container healthy", {r: up[r][1] for r in names}),
            ("up to every target up (empty data)", {r: up[r][0] for r in names})]  # fmt: skip
    # The first fault opens a new Alertmanager group (group_wait); a repeat within 15 min
    # finds its group still there (Prometheus re-sends resolved alerts) and waits for the
    # group's next interval tick.
    for name, fault in FAULTS.items():
        rows.append(
            (f"{name}: {fault.alertname} after its for:, first",
             {r: faults[r][name][0][:1] for r in names})
        )  # fmt: skip
        rows.append(("  repeats", {r: faults[r][name][0][1:] for r in names}))
        rows.append(("  resolved after the restart", {r: faults[r][name][1] for r in names}))
    for label, values in rows:
        print(f"  {label:44}" + "".join(f"{median(values[r]):>24}" for r in names))
    for r in names:
        after = [t for delivered, _ in faults[r].values() for t in delivered]
        print(f"  {r}: {sum(t < DELIVERY_TARGET for t in after)} of {len(after)} deliveries "
              f"within {DELIVERY_TARGET:g} s of their rule's for: (target: all), slowest "
              f"{max(after):.1f} s")  # fmt: skip
    if "native" in up:
        print("\n  native: /metrics latency, Prometheus scraping every second, the traffic mix:")
        for rate, load in loads.items():
            print(f"    asked {rate:3}/s, served {load['rate']:5.1f}/s: p50 {load['p50']:6.1f} ms, "
                  f"p99 {load['p99']:6.1f} ms ({load['samples']} samples)")  # fmt: skip
        print(f"\n  API memory (RSS) {memory['rss_before']:.1f} MiB before, "
              f"{memory['rss_after']:.1f} MiB after {args.requests:,} requests "
              f"({memory['rate']:.0f}/s: bad tokens, unknown "
              f"users and paths); /metrics {memory['size_before']:.1f} -> "
              f"{memory['size_after']:.1f} KiB")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
