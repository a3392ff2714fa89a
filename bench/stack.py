"""Stack figures (`make bench`): the native runtime on this machine, medians of several runs.

1. `make up` (packages present, empty data) to every target up.
2. Fault to notification, and restart to resolution, for each fault of the integration suite.
3. The sample service's `/metrics` latency (p50, p99) while Prometheus scrapes every second
   (the dev profile) and the traffic generator sends its mix at 50/s and at its full rate
   (500/s asked: more than one API process on two cores serves, so it runs saturated).
4. The API process' memory (RSS) and its `/metrics` size before and after N cheap requests
   (bad tokens, unknown users, unknown paths): the metrics must not grow with traffic.

``python bench/stack.py [--runs 3] [--requests 100000]``; progress on stderr, figures on stdout.
Targets on this machine: every target up within 10 s, each fault delivered within 15 s,
`/metrics` p99 under 100 ms, memory flat under traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.faults import FAULTS, inject
from tests.integration.runtimes import NativeStack


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


def bench_up(runs: int) -> tuple[list[float], NativeStack]:
    times, stack = [], None
    for run in range(runs):
        if stack is not None:
            stack.close()
        begin = time.monotonic()
        stack = NativeStack()
        times.append(time.monotonic() - begin)
        say(f"  up {run + 1}/{runs}: {times[-1]:.1f} s")
    assert stack is not None
    return times, stack


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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3, help="runs per figure (median)")
    p.add_argument("--requests", type=int, default=100_000, help="requests of the load run")
    args = p.parse_args()
    say(f"native stack: {args.runs} up runs")
    up_times, stack = bench_up(args.runs)
    try:
        faults: dict[str, tuple[list[float], list[float]]] = {}
        for name, fault in FAULTS.items():
            delivered, resolved = [], []
            for run in range(args.runs):
                _, _, d, r = inject(stack, fault)
                delivered.append(d)
                resolved.append(r)
                say(f"  {name} {run + 1}/{args.runs}: delivered {d:.1f} s, resolved {r:.1f} s")
            faults[name] = (delivered, resolved)
        token = (stack.root / "dev" / "secrets" / "metrics_token").read_text().strip()
        stack.stop("traffic")  # the dev generator (5/s) gives way to the bench's own load
        loads = {}
        for rate in (50, 500):
            say(f"/metrics latency: the traffic mix at up to {rate}/s for 30 s")
            loads[rate] = latency_under_traffic(stack, token, rate, 30)
        say(f"memory: {args.requests:,} requests")
        memory = memory_after(stack, token, args.requests)
    finally:
        stack.close()

    print(f"\nStack figures (native runtime, dev profile; median of {args.runs} runs)\n")
    print(f"  make up to every target up (empty data):  {statistics.median(up_times):5.1f} s"
          f"   (runs: {', '.join(f'{t:.1f}' for t in up_times)})")  # fmt: skip
    # The first fault opens a new Alertmanager group (group_wait); a repeat within 15 min
    # finds its group still there (Prometheus re-sends resolved alerts) and waits for the
    # group's next interval tick.
    print("\n  fault                      alert          delivered: first  repeats   resolved")
    for name, (delivered, resolved) in faults.items():
        repeats = f"{statistics.median(delivered[1:]):6.1f} s" if len(delivered) > 1 else "     -  "
        print(f"  {name:26} {FAULTS[name].alertname:14} {delivered[0]:13.1f} s {repeats}"
              f" {statistics.median(resolved):7.1f} s")  # fmt: skip
    print("\n  /metrics latency, Prometheus scraping every second, the traffic mix running:")
    for rate, load in loads.items():
        print(f"    asked {rate:3}/s, served {load['rate']:5.1f}/s: p50 {load['p50']:6.1f} ms, "
              f"p99 {load['p99']:6.1f} ms ({load['samples']} samples)")  # fmt: skip
    print(f"\n  API memory (RSS) {memory['rss_before']:.1f} MiB before, {memory['rss_after']:.1f} "
          f"MiB after {args.requests:,} requests ({memory['rate']:.0f}/s: bad tokens, unknown "
          f"users and paths); /metrics {memory['size_before']:.1f} -> "
          f"{memory['size_after']:.1f} KiB")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
