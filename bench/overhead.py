"""Benchmark: app_metrics vs. peers, driven in-process through ASGI (no network, no TestClient).

1. Per-request overhead of four copies of one FastAPI app (plain, app_metrics,
   prometheus-fastapi-instrumentator, starlette-exporter), interleaved rounds in one loop.
2. ``/metrics`` render time of app_metrics at 100, 1,000 and 10,000 label sets.
3. Series added by 10,000 unknown paths and 10,000 trailing-slash probes, per library.

Run with ``make bench`` (``.venv/bin/python bench/overhead.py``). Results go to stdout,
progress to stderr.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import os
import platform
import random
import statistics
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from time import perf_counter, perf_counter_ns
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import PlainTextResponse
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_fastapi_instrumentator import Instrumentator
from starlette_exporter import PrometheusMiddleware, handle_metrics

import app_metrics

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TOKEN = "bench-token"
AUTH = (b"authorization", f"Bearer {TOKEN}".encode())
WARMUP_ROUNDS = 2
ROUNDS = 15
BATCH = 2_000
RENDER_SIZES = (100, 1_000, 10_000)
SCAN_REQUESTS = 10_000
SERIES_TARGET = 20
OPENMETRICS = "application/openmetrics-text; version=1.0.0"

# Request paths of the overhead mix and the template each should be counted under.
MIX = ("/items/42", "/api/users/7", "/health", "/nope/404")
TEMPLATES = {
    "/items/42": "/items/{item_id}",
    "/api/users/7": "/api/users/{user_id}",
    "/health": "/health",
}

_T0 = perf_counter()


def progress(msg: str) -> None:
    print(f"[{perf_counter() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the app


def build_app() -> FastAPI:
    """The small app every variant wraps: two plain routes and a prefixed router."""
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def get_item(item_id: int) -> dict[str, Any]:
        return {"item_id": item_id, "name": "widget", "price": 9.5}

    @app.get("/health", response_class=PlainTextResponse)
    async def health() -> str:
        return "ok"

    users = APIRouter()

    @users.get("/{user_id}")
    async def get_user(user_id: int) -> dict[str, Any]:
        return {"user_id": user_id, "active": True}

    app.include_router(users, prefix="/api/users")
    return app


# --------------------------------------------------------------------------- ASGI driver


def make_scope(path: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"bench"), *headers],
        "server": ("bench", 80),
        "client": ("127.0.0.1", 50000),
    }


def _receiver() -> Receive:
    """One ``http.request`` message, then ``http.disconnect``."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": b"", "more_body": False}

    return receive


async def _discard(message: Message) -> None:
    return None


@dataclass
class Response:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


async def request(app: ASGIApp, path: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> Response:
    """One GET through the app; collects the response."""
    messages: list[Message] = []

    async def send(message: Message) -> None:
        messages.append(message)

    await app(make_scope(path, headers), _receiver(), send)
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return Response(start["status"], dict(start.get("headers", [])), body)


async def run_batch(app: ASGIApp, scopes: Sequence[Scope], n: int) -> float:
    """µs per request for ``n`` requests cycling over ``scopes`` (response discarded)."""
    k = len(scopes)
    begin = perf_counter_ns()
    for i in range(n):
        tpl = scopes[i % k]
        await app({**tpl, "headers": list(tpl["headers"])}, _receiver(), _discard)
    return (perf_counter_ns() - begin) / n / 1_000


async def lifespan_startup(app: ASGIApp) -> Callable[[], Awaitable[None]]:
    """Run the app's lifespan startup; returns a coroutine function that shuts it down."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
    task = asyncio.create_task(app(scope, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    reply = await asyncio.wait_for(outbox.get(), 10)
    if reply["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"lifespan startup failed: {reply}")

    async def shutdown() -> None:
        await inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(outbox.get(), 10)
        await asyncio.wait_for(task, 10)

    return shutdown


# --------------------------------------------------------------------------- variants


@dataclass
class Variant:
    name: str
    app: FastAPI
    family: str  # the requests counter family in the exposition
    label: str  # its route label
    scrape_headers: tuple[tuple[bytes, bytes], ...] = ()
    registry: CollectorRegistry = REGISTRY
    series_prefix: str = ""  # only lines with this prefix are this variant's series
    sent: Counter[str] = field(default_factory=Counter)


def instrument_full(app: FastAPI, registry: CollectorRegistry, label_cap: int = 200) -> Any:
    """app_metrics with the full feature set: const labels, token, domain metrics."""
    return app_metrics.instrument(
        app,
        registry=registry,
        const_labels={"service": "bench"},
        token=TOKEN,
        label_cap=label_cap,
        sms_providers=("twilio", "vonage"),
        oauth_providers=("google", "github"),
        task_types=("email", "report"),
        task_queues=("default",),
    )


def plain_variant() -> Variant:
    return Variant("plain FastAPI", build_app(), "", "")


def app_metrics_variant() -> Variant:
    app, registry = build_app(), CollectorRegistry()
    instrument_full(app, registry)
    return Variant("app_metrics", app, "http_requests", "endpoint", (AUTH,), registry)


def instrumentator_variant() -> Variant:
    app, registry = build_app(), CollectorRegistry()
    Instrumentator(registry=registry).instrument(app).expose(app)
    return Variant("instrumentator", app, "http_requests", "handler", (), registry)


def exporter_variant(prefix: str) -> Variant:
    # starlette-exporter has no registry parameter: it registers in the default REGISTRY
    # (on the class, per metric name), so each instance gets its own prefix.
    app = build_app()
    app.add_middleware(PrometheusMiddleware, app_name="bench", prefix=prefix)
    app.add_route("/metrics", handle_metrics)
    return Variant(
        "starlette-exporter", app, f"{prefix}_requests", "path", series_prefix=f"{prefix}_"
    )


# --------------------------------------------------------------------------- section 1


async def check_statuses(variant: Variant) -> list[int]:
    statuses = [(await request(variant.app, p)).status for p in MIX]
    variant.sent.update(MIX)
    return statuses


async def run_rounds(variants: list[Variant]) -> dict[str, list[float]]:
    """Interleaved rounds: each round runs one batch per variant, order rotated."""
    scopes = [make_scope(p) for p in MIX]
    per_path = Counter({p: BATCH // len(MIX) for p in MIX})
    results: dict[str, list[float]] = {v.name: [] for v in variants}
    for r in range(WARMUP_ROUNDS + ROUNDS):
        k = r % len(variants)
        for v in variants[k:] + variants[:k]:
            gc.collect()
            us = await run_batch(v.app, scopes, BATCH)
            v.sent.update(per_path)
            if r >= WARMUP_ROUNDS:
                results[v.name].append(us)
        label = "warm-up" if r < WARMUP_ROUNDS else f"round {r - WARMUP_ROUNDS + 1}/{ROUNDS}"
        progress(f"section 1: {label} done")
    return results


async def counted(variant: Variant) -> dict[str, float]:
    """Requests counted per route label, read from the variant's own /metrics response."""
    resp = await request(variant.app, "/metrics", variant.scrape_headers)
    if resp.status != 200:
        raise RuntimeError(f"{variant.name}: /metrics answered {resp.status}")
    out: Counter[str] = Counter()
    for family in text_string_to_metric_families(resp.body.decode()):
        if family.name != variant.family:
            continue
        for sample in family.samples:
            if sample.name == f"{variant.family}_total":
                out[sample.labels.get(variant.label, "?")] += sample.value
    return dict(out)


def count_report(variant: Variant, counts: dict[str, float]) -> tuple[list[str], str]:
    """Lines comparing counted and sent requests per route, and a one-word verdict."""
    lines, bad = [], []
    for path, template in TEMPLATES.items():
        got, want = int(counts.get(template, 0)), variant.sent[path]
        ok = got == want
        if not ok:
            bad.append(template)
        mark = "ok" if ok else "MISMATCH"
        lines.append(f"    {template:<22} counted {got:>7,} of {want:>7,} sent  {mark}")
    others = {k: v for k, v in counts.items() if k not in TEMPLATES.values()}
    other_text = ", ".join(f"{k}={int(v):,}" for k, v in sorted(others.items())) or "none"
    lines.append(f"    other labels: {other_text}  (404 path sent {variant.sent['/nope/404']:,}x)")
    verdict = "ok" if not bad else "MISMATCH " + ", ".join(bad)
    if not others:
        verdict += "; 404s not counted"
    return lines, verdict


@dataclass
class Overhead:
    name: str
    median: float
    p25: float
    p75: float
    added: float = 0.0
    paired: float = 0.0  # median over rounds of (this batch - plain batch of the same round)
    ratio: float = 1.0
    vs_app_metrics: float | None = None
    verdict: str = "-"


def summarise(results: dict[str, list[float]], base: str, ref: str) -> list[Overhead]:
    rows = []
    for name, samples in results.items():
        q = statistics.quantiles(samples, n=4)
        rows.append(Overhead(name, statistics.median(samples), q[0], q[2]))
    base_median = next(r.median for r in rows if r.name == base)
    for row in rows:
        row.added = row.median - base_median
        row.ratio = row.median / base_median
        pairs = zip(results[row.name], results[base], strict=True)
        row.paired = statistics.median(a - b for a, b in pairs)
    ref_added = next(r.added for r in rows if r.name == ref)
    for row in rows:
        if row.name != base and ref_added > 0:
            row.vs_app_metrics = row.added / ref_added
    return rows


async def section_overhead() -> list[Overhead]:
    print(
        f"\n== 1. Per-request overhead ({ROUNDS} interleaved rounds x {BATCH:,} requests, "
        f"after {WARMUP_ROUNDS} warm-up rounds) =="
    )
    print(f"request mix, cycled: {', '.join(MIX)}")
    variants = [
        plain_variant(),
        app_metrics_variant(),
        instrumentator_variant(),
        exporter_variant("se_bench"),
    ]
    shutdowns = [await lifespan_startup(v.app) for v in variants]
    for v in variants:
        print(f"  statuses {v.name:<20} {await check_statuses(v)}")
    results = await run_rounds(variants)
    rows = summarise(results, "plain FastAPI", "app_metrics")
    print(
        f"\n  {'variant':<20} {'median µs/req':>13} {'p25–p75':>15} {'added µs':>9} "
        f"{'(paired)':>9} {'× plain':>8} {'added / app_metrics added':>26}"
    )
    for row in rows:
        plain = row.name == "plain FastAPI"
        rel = "-" if row.vs_app_metrics is None else f"{row.vs_app_metrics:.2f}"
        added = "-" if plain else f"{row.added:+.1f}"
        paired = "-" if plain else f"{row.paired:+.1f}"
        print(
            f"  {row.name:<20} {row.median:>13.1f} {row.p25:>7.1f}–{row.p75:<7.1f} "
            f"{added:>9} {paired:>9} {row.ratio:>8.2f} {rel:>26}"
        )
    print("  (paired = median over rounds of the variant's batch minus plain's batch that round)")
    print("\n  requests counted by each variant (read from its own /metrics):")
    for v, row in zip(variants[1:], rows[1:], strict=True):
        lines, row.verdict = count_report(v, await counted(v))
        print(f"  {v.name}:")
        print("\n".join(lines))
    for shutdown in shutdowns:
        await shutdown()
    return rows


# --------------------------------------------------------------------------- section 2


def median_ms(fn: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        gc.collect()
        begin = perf_counter()
        fn()
        times.append((perf_counter() - begin) * 1_000)
    return statistics.median(times)


def filled_metrics(n: int) -> tuple[FastAPI, Any]:
    app, registry = build_app(), CollectorRegistry()
    metrics = instrument_full(app, registry, label_cap=n + 1_000)
    for i in range(n):
        metrics.http.observe("GET", f"/route_{i}", 200, 0.01)
    return app, metrics


async def section_render() -> None:
    print("\n== 2. app_metrics /metrics render time (median of runs, ms) ==")
    print(f"  {'label sets':>10} {'format':<30} {'ms':>9} {'body bytes':>12} {'series':>8}")
    for n in RENDER_SIZES:
        progress(f"section 2: filling {n:,} label sets")
        app, metrics = filled_metrics(n)
        runs = 3 if n >= 10_000 else 7
        time_renders(n, metrics, runs)
        if n == RENDER_SIZES[-1]:
            await full_get(app, runs)


def time_renders(n: int, metrics: Any, runs: int) -> None:
    """Text, OpenMetrics and text+gzip render times for one filled registry."""
    text, _ = metrics.render()
    samples = [ln for ln in text.decode().splitlines() if ln and not ln.startswith("#")]
    om, _ = metrics.render(OPENMETRICS)
    gz = gzip.compress(text, 6)
    cases: list[tuple[str, Callable[[], Any], int]] = [
        ("text 0.0.4", metrics.render, len(text)),
        ("OpenMetrics 1.0.0", lambda: metrics.render(OPENMETRICS), len(om)),
        ("text + gzip -6", lambda: gzip.compress(metrics.render()[0], 6), len(gz)),
        ("ref: generate_latest(registry)", lambda: generate_latest(metrics.registry), len(text)),
    ]
    for label, fn, size in cases:
        ms = median_ms(fn, runs)
        print(f"  {n:>10,} {label:<30} {ms:>9.1f} {size:>12,} {len(samples):>8,}")
    rejected = sum(1 for ln in samples if "<overflow>" in ln or "<redacted>" in ln)
    if rejected:
        print(f"  WARNING: {rejected} series with <overflow>/<redacted> values at n={n}")


async def full_get(app: FastAPI, runs: int) -> None:
    headers = (AUTH, (b"accept-encoding", b"gzip"))
    times, resp = [], None
    for _ in range(runs):
        gc.collect()
        begin = perf_counter()
        resp = await request(app, "/metrics", headers)
        times.append((perf_counter() - begin) * 1_000)
    assert resp is not None
    enc = resp.headers.get(b"content-encoding", b"identity").decode()
    print(
        f"  {RENDER_SIZES[-1]:>10,} {'GET /metrics via ASGI (' + enc + ')':<30} "
        f"{statistics.median(times):>9.1f} {len(resp.body):>12,}   status {resp.status}"
    )


# --------------------------------------------------------------------------- section 3


def series_keys(registry: CollectorRegistry, prefix: str = "") -> set[str]:
    """Sample lines (name and labels, value dropped) of the registry's text exposition."""
    text = generate_latest(registry).decode()
    return {
        ln.rsplit(" ", 1)[0]
        for ln in text.splitlines()
        if ln and not ln.startswith("#") and ln.startswith(prefix)
    }


def unknown_paths(rng: random.Random) -> list[str]:
    return [f"/x/{uuid.UUID(int=rng.getrandbits(128))}" for _ in range(SCAN_REQUESTS)]


def slash_probes(rng: random.Random) -> list[str]:
    """Real routes with a trailing slash added, ids varied."""
    shapes = ("/items/{}/", "/api/users/{}/", "/health/")
    return [shapes[i % 3].format(rng.randrange(1, 100_000)) for i in range(SCAN_REQUESTS)]


@dataclass
class ScanResult:
    added: int
    example: str  # one added series, or "" when none was added


async def scan(variant: Variant, paths: list[str]) -> ScanResult:
    """Send ``paths``; return the series they added and one of them."""
    before = series_keys(variant.registry, variant.series_prefix)
    for path in paths:
        await variant.app(make_scope(path), _receiver(), _discard)
    added = sorted(series_keys(variant.registry, variant.series_prefix) - before)
    totals = [k for k in added if "_total{" in k]
    example = (totals or added or [""])[0]
    return ScanResult(len(added), example[:110])


async def section_series() -> dict[str, tuple[int, int]]:
    print(
        f"\n== 3. Series added by scans ({SCAN_REQUESTS:,} requests each; fresh registry per "
        "library; every sample line counts, _bucket/_created included) =="
    )
    print("  baseline: one request to each real route first; then unknown paths, then slashes")
    variants = [app_metrics_variant(), instrumentator_variant(), exporter_variant("se_scan")]
    out: dict[str, tuple[int, int]] = {}
    examples: list[str] = []
    print(f"  {'variant':<20} {'baseline':>9} {'+unknown paths':>15} {'+slash probes':>14}")
    for v in variants:
        shutdown = await lifespan_startup(v.app)
        for path in TEMPLATES:
            await request(v.app, path)
        baseline = len(series_keys(v.registry, v.series_prefix))
        rng = random.Random(42)
        progress(f"section 3: {v.name} unknown-path scan")
        unknown = await scan(v, unknown_paths(rng))
        progress(f"section 3: {v.name} trailing-slash scan")
        slash = await scan(v, slash_probes(rng))
        await shutdown()
        out[v.name] = (unknown.added, slash.added)
        print(f"  {v.name:<20} {baseline:>9,} {unknown.added:>+15,} {slash.added:>+14,}")
        for kind, result in (("unknown", unknown), ("slash", slash)):
            examples.append(f"    {v.name} / {kind}: {result.example or '(none added)'}")
    am = out["app_metrics"]
    verdict = "met" if max(am) <= SERIES_TARGET else "MISSED"
    print(f"  app_metrics target (<= {SERIES_TARGET} added per scan): {verdict}")
    print("  one added series per scan:")
    print("\n".join(examples))
    return out


# --------------------------------------------------------------------------- report


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    libs = (
        "fastapi",
        "starlette",
        "prometheus-client",
        "prometheus-fastapi-instrumentator",
        "starlette-exporter",
        "app-metrics",
    )
    versions = " ".join(f"{name}={version(name)}" for name in libs)
    return (
        f"machine: {cpu} x{os.cpu_count()} | Python {platform.python_version()} | {versions} "
        f"(repo {git_revision()})"
    )


def git_revision() -> str:
    """The commit app_metrics was measured at (the module changes between runs)."""
    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip()


def markdown(rows: list[Overhead], series: dict[str, tuple[int, int]]) -> str:
    head = (
        "| Variant | µs/request | Added µs | × plain | Added vs app_metrics | Counts "
        f"| +series, {SCAN_REQUESTS:,} unknown paths | +series, {SCAN_REQUESTS:,} slash probes |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---|---:|---:|"]
    for r in rows:
        plain = r.name == "plain FastAPI"
        added = "-" if plain else f"{r.added:+.1f}"
        rel = "-" if r.vs_app_metrics is None else f"{r.vs_app_metrics:.2f}×"
        unk, sl = (f"{v:+,}" for v in series[r.name]) if r.name in series else ("-", "-")
        lines.append(
            f"| {r.name} | {r.median:.1f} | {added} | {r.ratio:.2f} | {rel} | {r.verdict} "
            f"| {unk} | {sl} |"
        )
    return "\n".join(lines)


async def main() -> None:
    print(machine_line())
    rows = await section_overhead()
    await section_render()
    series = await section_series()
    print("\n== Summary (Markdown) ==\n")
    print(markdown(rows, series))
    progress(f"done in {perf_counter() - _T0:.0f}s")


if __name__ == "__main__":
    asyncio.run(main())
