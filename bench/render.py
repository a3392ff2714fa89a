"""Benchmark: the ``/metrics`` renderer's cost per exposed line against prometheus-client's.

Single process: ``Metrics.render`` (text 0.0.4 and OpenMetrics) against prometheus-client's
``generate_latest`` on the same registry. Multiprocess: the same against prometheus-client's
``MultiProcessCollector`` and ``generate_latest`` over the same directory, the files of the
answering process and of WORKERS more; a child process per size, since
``PROMETHEUS_MULTIPROC_DIR`` must be set before prometheus_client is imported. There the target
is held against scrapes that find every file changed (workers served requests meanwhile, so
nothing can be served again); scrapes of unchanged files are shown beside it.

Runs interleave ours and theirs (the order alternating); the ratio is the median of the
per-run ratios, so a machine busy with other work slows both alike. Target: at most 1/10.

Run with ``make bench`` (``.venv/bin/python bench/render.py``).
"""

from __future__ import annotations

import gc
import os
import statistics
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from time import perf_counter
from typing import Any

SIZES = (100, 1_000, 10_000)  # HTTP label sets (method, endpoint, status): 15 lines each
MP_SIZES = (100, 1_000)
WORKERS = 2  # worker processes whose files the answering one merges with its own
TARGET = 10  # ours at most 1/TARGET of prometheus-client's cost per line
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
FORMATS = (("text 0.0.4", ""), ("OpenMetrics 1.0.0", OPENMETRICS))


def runs_for(n: int) -> int:
    return 5 if n >= 10_000 else 15


def lines(body: bytes) -> int:
    return sum(1 for ln in body.split(b"\n") if ln and not ln.startswith(b"#"))


def timed(fn: Callable[[], Any], before: Callable[[], None]) -> tuple[float, Any]:
    before()
    gc.collect()
    begin = perf_counter()
    out = fn()
    return perf_counter() - begin, out


def compare(
    ours: Callable[[], bytes],
    theirs: Callable[[], bytes],
    runs: int,
    before: Callable[[], None] = lambda: None,
) -> tuple[float, float, float]:
    """(ours µs/line, theirs µs/line, their cost / ours): medians of interleaved runs."""
    mine, other, ratios = [], [], []
    for i in range(runs):
        pair: list[tuple[float, bytes]] = [(0.0, b""), (0.0, b"")]
        for which in (i % 2, 1 - i % 2):
            pair[which] = timed(ours if which == 0 else theirs, before)
        (t_ours, body_ours), (t_theirs, body_theirs) = pair
        mine.append(t_ours / lines(body_ours) * 1e6)
        other.append(t_theirs / lines(body_theirs) * 1e6)
        ratios.append(other[-1] / mine[-1])
    return statistics.median(mine), statistics.median(other), statistics.median(ratios)


def row(mode: str, n: int, n_lines: int, fmt: str, figures: tuple[float, float, float]) -> str:
    ours, theirs, ratio = figures
    verdict = "met" if ratio >= TARGET else "MISSED"
    return (
        f"  {mode:<26} {n:>7,} {n_lines:>8,} {fmt:<18} {ours:>8.2f} {theirs:>9.2f} "
        f"{'1/' + format(ratio, '.1f'):>8}   <= 1/{TARGET}: {verdict}"
    )


def heading() -> None:
    print(
        f"  {'mode':<26} {'label':>7} {'lines':>8} {'format':<18} {'ours':>8} {'p-client':>9} "
        f"{'ratio':>8}\n  {'':<26} {'sets':>7} {'':>8} {'':<18} {'µs/line':>8} {'µs/line':>9}"
    )


def instrumented(n: int) -> Any:
    """The bench app (app_metrics with its full feature set) with ``n`` HTTP label sets."""
    from fastapi import FastAPI
    from prometheus_client import CollectorRegistry

    import app_metrics

    metrics = app_metrics.instrument(
        FastAPI(),
        registry=CollectorRegistry(),
        const_labels={"service": "bench"},
        token="bench-token",
        label_cap=n + 1_000,
        sms_providers=("twilio", "vonage"),
        oauth_providers=("google", "github"),
        task_types=("email", "report"),
        task_queues=("default",),
    )
    serve(metrics, n)
    return metrics


def serve(metrics: Any, n: int) -> None:
    for i in range(n):
        metrics.http.observe("GET", f"/route_{i}", 200, 0.01 * (i % 7))


def single_process(n: int) -> None:
    from prometheus_client.exposition import choose_encoder

    metrics = instrumented(n)
    for fmt, accept in FORMATS:
        encoder, _ = choose_encoder(accept)
        body = metrics.render(accept)[0]
        figures = compare(
            lambda a=accept: metrics.render(a)[0],  # type: ignore[misc]
            lambda e=encoder: e(metrics.registry),  # type: ignore[misc]
            runs_for(n),
        )
        print(row("single process", n, lines(body), fmt, figures), flush=True)


def touch_every_file(directory: str) -> None:
    """Add 1 to the first value of every file, as a request in each worker would."""
    for path in Path(directory).glob("*.db"):
        with open(path, "r+b") as f:
            head = f.read(16)
            if len(head) < 16 or struct.unpack_from("i", head, 0)[0] <= 8:
                continue
            (length,) = struct.unpack_from("i", head, 8)
            at = 8 + 4 + length + (8 - (length + 4) % 8)
            f.seek(at)
            (value,) = struct.unpack("d", f.read(8))
            f.seek(at)
            f.write(struct.pack("d", value + 1))


def multiprocess(n: int) -> None:
    """In a child with PROMETHEUS_MULTIPROC_DIR set: WORKERS forked workers serve ``n`` label
    sets each and stay alive while this process, the answering worker, is measured."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import choose_encoder
    from prometheus_client.multiprocess import MultiProcessCollector

    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    metrics = instrumented(n)
    release, hold = os.pipe()
    workers = []
    for _ in range(WORKERS):
        done_r, done_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            serve(metrics, n)
            os.write(done_w, b"x")
            os.read(release, 1)  # alive until measured
            os._exit(0)
        os.read(done_r, 1)
        workers.append(pid)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, directory)
    for fmt, accept in FORMATS:
        encoder, _ = choose_encoder(accept)
        body = metrics.render(accept)[0]
        for label, before in (
            ("multiprocess, all changed", lambda: touch_every_file(directory)),
            ("  (no file changed)", lambda: None),
        ):
            figures = compare(
                lambda a=accept: metrics.render(a)[0],  # type: ignore[misc]
                lambda e=encoder: e(registry),  # type: ignore[misc]
                runs_for(n),
                before,
            )
            print(row(label, n, lines(body), fmt, figures), flush=True)
    os.write(hold, b"x" * WORKERS)
    for pid in workers:
        os.waitpid(pid, 0)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--multiprocess":
        multiprocess(int(sys.argv[2]))
        return
    print(
        f"\n== /metrics renderer: cost per exposed line, app_metrics vs. prometheus-client "
        f"(interleaved runs, medians; target <= 1/{TARGET}) =="
    )
    heading()
    for n in SIZES:
        single_process(n)
    for n in MP_SIZES:
        with tempfile.TemporaryDirectory(prefix="bench-render-") as directory:
            env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory}
            argv = [sys.executable, __file__, "--multiprocess", str(n)]
            subprocess.run(argv, env=env, check=True)
    print(
        f"  (multiprocess: the answering process and {WORKERS} workers, each serving every "
        "label set; prometheus-client: MultiProcessCollector + its encoder)"
    )


if __name__ == "__main__":
    main()
