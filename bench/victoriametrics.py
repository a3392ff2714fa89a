"""The long-term store's figures (`make bench`): Debian's single-node victoria-metrics on a
throwaway directory and a free port of 127.0.0.1, stopped by PID at the end.

Synthetic series shaped like this stack's (per instance: requests by route, method and status,
a latency histogram, process and runtime gauges), with value changes like real ones (counters
that grow by irregular amounts, some rarely; gauges that wander), one sample per series every
15 s over an hour, with explicit timestamps, sent through /api/v1/import/prometheus as
scrapes would arrive: one request per instant, two senders. It prints:

1. ingest: samples per second on this machine (the bodies are made off the clock;
   the two senders share the two cores with the store, so this is a floor);
2. disk: bytes per sample of the data and of the index after a forced flush and merge;
3. memory: the store's RSS growth (/proc/<pid>/status VmRSS) per active series;
4. the sizing rows docs/scale.md extrapolates from them (1 M and 10 M active series).

``python bench/victoriametrics.py [--series 50000] [--minutes 60] [--quick]``; progress on
stderr, figures on stdout; about a minute (--quick: seconds).
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stack.backup import size
from tests.stack.victoriametrics import VictoriaMetrics, metric

INTERVAL = 15  # seconds between samples: the scrape interval
PER_DAY = 86400 // INTERVAL
RETENTION_DAYS = 395  # 13 months
ROUTES = ["/users", "/users/{id}", "/sessions", "/verifications", "/verifications/{id}",
          "/sms", "/integrations/{provider}", "/health/overall"]  # fmt: skip
BATCH = 20  # instants made, then sent, at a time
BUCKETS = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"]


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Series:
    """One series: its name and labels, how its value moves, its current value."""

    def __init__(self, text: str, kind: str, rate: float, value: float) -> None:
        self.text, self.kind, self.rate, self.value = text, kind, rate, value

    def step(self, rng: random.Random) -> str:
        if self.kind == "counter":  # requests, buckets: whole increments, irregular
            if rng.random() < self.rate:
                self.value += rng.randint(1, 1 + int(self.rate * 40))
            return str(int(self.value))
        if self.kind == "seconds":  # CPU seconds: a float that grows
            self.value += round(rng.uniform(0.05, 0.6) * INTERVAL, 2)
            return f"{self.value:.2f}"
        if self.kind == "bytes":  # resident memory: pages come and go
            self.value = max(4096.0, self.value + 4096 * rng.randint(-64, 64))
            return str(int(self.value))
        self.value = max(0.0, self.value + rng.choice((-1, 0, 0, 0, 1)))  # goroutines, queue
        return str(int(self.value))


def make_series(count: int, rng: random.Random) -> list[Series]:
    made: list[Series] = []
    instance = 0
    while len(made) < count:
        base = f'job="api",instance="10.0.{instance // 250}.{instance % 250}:8000"'
        for route in ROUTES:
            for method in ("GET", "POST"):
                for status, busy in (("200", 0.9), ("404", 0.2), ("500", 0.02)):
                    labels = f'{base},route="{route}",method="{method}",status="{status}"'
                    made.append(Series(f"http_requests_total{{{labels}}}", "counter", busy,
                                       rng.randint(0, 10**6)))  # fmt: skip
            for i, le in enumerate(BUCKETS):
                labels = f'{base},route="{route}",le="{le}"'
                made.append(Series(f"http_request_duration_seconds_bucket{{{labels}}}",
                                   "counter", 0.1 + 0.08 * i, rng.randint(0, 10**5)))  # fmt: skip
        made.append(Series(f"process_cpu_seconds_total{{{base}}}", "seconds", 0, 1000.0))
        made.append(Series(f"process_resident_memory_bytes{{{base}}}", "bytes", 0, 8e7))
        for name in ("python_gc_objects_collected", "tasks_queue_depth", "db_pool_in_use"):
            made.append(Series(f"{name}{{{base}}}", "gauge", 0, rng.randint(0, 50)))
        instance += 1
    return made[:count]


def instants(minutes: int) -> list[int]:
    """Every 15 s over ``minutes``, ending a minute ago, in ms."""
    steps = minutes * 60 // INTERVAL
    end = int(time.time()) - 60
    return [(end - (steps - 1 - step) * INTERVAL) * 1000 for step in range(steps)]


def body(series: list[Series], at: int, rng: random.Random) -> bytes:
    """One instant of every series: what a round of scrapes brings."""
    return "".join(f"{s.text} {s.step(rng)} {at}\n" for s in series).encode()


def ingest(store: VictoriaMetrics, series: list[Series], minutes: int, rng: random.Random) -> float:
    """Every instant sent, a batch at a time by two senders; the seconds spent sending (the
    bodies are made between batches, off the clock)."""
    sending = 0.0
    every = instants(minutes)
    with ThreadPoolExecutor(2) as senders:
        for first in range(0, len(every), BATCH):
            batch = [body(series, at, rng) for at in every[first : first + BATCH]]
            begin = time.perf_counter()
            list(senders.map(lambda b: store.call("/api/v1/import/prometheus", b), batch))
            sending += time.perf_counter() - begin
            say(f"  {first + len(batch)}/{len(every)} instants sent")
    return sending


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--series", type=int, default=50_000)
    p.add_argument("--minutes", type=int, default=60)
    p.add_argument("--quick", action="store_true", help="10 000 series over 10 minutes")
    args = p.parse_args()
    count, minutes = (10_000, 10) if args.quick else (args.series, args.minutes)
    rng = random.Random(15)
    series = make_series(count, rng)
    samples = count * len(instants(minutes))
    say(f"{count} series x {samples // count} samples, {BATCH} instants a batch")
    # Debian's build prints no -version: the package's
    version = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "victoria-metrics"],
                             capture_output=True, text=True, check=False).stdout  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-vm-") as scratch:
        store = VictoriaMetrics(Path(scratch) / "data", Path(scratch) / "vm.log")
        try:
            idle = rss_bytes(store.pid)
            took = ingest(store, series, minutes, rng)
            say("flushing and merging ...")
            store.flush()
            store.merge()
            listed = store.series_count()  # the index's count: a check, not a figure
            if listed < count:
                raise RuntimeError(f"the store lists {listed} series of the {count} sent")
            rss = rss_bytes(store.pid)
            heap = metric(store.call("/metrics").decode(), "go_memstats_heap_inuse_bytes")
            data = size(Path(scratch) / "data" / "data")
            index = size(Path(scratch) / "data" / "indexdb")
        finally:
            store.stop()
    figures = {
        "version": f"victoria-metrics {version or '(not from Debian)'}",
        "series": count,
        "samples": samples,
        "ingest": samples / took,
        "data_per_sample": data / samples,
        "index_per_series": index / count,
        "rss_idle": idle,
        "rss_per_series": (rss - idle) / count,
        "heap_per_series": heap / count,
    }
    report(figures)
    return 0


def report(f: dict[str, float | str]) -> None:
    per_sample, per_series = float(f["data_per_sample"]), float(f["index_per_series"])
    print(f"{f['version']}; {f['series']} active series, {f['samples']} samples")
    print(f"ingest:  {f['ingest']:,.0f} samples/s (two senders on the same two cores)")
    print(f"disk:    {per_sample:.2f} bytes/sample (data), {per_series:.0f} bytes/series (index)")
    print(f"memory:  {float(f['rss_per_series']):.0f} bytes of RSS per active series "
          f"(idle {float(f['rss_idle']) / 2**20:.0f} MiB); Go heap in use "
          f"{float(f['heap_per_series']):.0f} bytes per series")  # fmt: skip
    print("sizing at a 15 s scrape (no churn): series, samples/s, disk/day, disk/13 months, RAM")
    for series in (10**6, 10**7):
        day = series * (PER_DAY * per_sample + per_series)  # each day indexes its series anew
        ram = float(f["rss_idle"]) + series * float(f["rss_per_series"])
        print(f"  {series:>10,}  {series / INTERVAL:>9,.0f}/s  {day / 1e9:6.1f} GB"
              f"  {day * RETENTION_DAYS / 1e12:6.2f} TB  {ram / 2**30:5.1f} GiB")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
