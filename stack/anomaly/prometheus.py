"""A throwaway Prometheus on 127.0.0.1 over the replayed TSDB, started and stopped by PID, and
the range queries the evaluation asks it."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path

from ..processes import Running, launch, stop
from ..settings import StackError

READY_TIMEOUT = 60.0
Series = tuple[dict[str, str], list[tuple[int, float]]]


class Prometheus:
    """``with Prometheus(tsdb, port, work) as p: p.query_range(...)``; ``restart()`` loads
    blocks added to the TSDB."""

    def __init__(self, tsdb: Path, port: int, work: Path) -> None:
        self.tsdb, self.port, self.work = tsdb, port, work
        self.url = f"http://127.0.0.1:{port}"
        self.running: Running | None = None

    def start(self) -> None:
        config = self.work / "prometheus.yml"
        config.write_text("global: {scrape_interval: 1m}\n")
        self.running = launch(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={self.tsdb}",
                "--storage.tsdb.retention.time=90d",
                # no compaction of the backfilled blocks while the evaluation runs
                "--storage.tsdb.min-block-duration=2h",
                "--storage.tsdb.max-block-duration=2h",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--query.max-samples=200000000",
            ],
            self.work / "prometheus.log",
        )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            if not self.running.alive():
                break
            time.sleep(0.2)
        self.stop()
        raise StackError(f"Prometheus on {self.url} did not get ready (log: {self.work})")

    def stop(self) -> None:
        if self.running is not None:
            stop(self.running)
            self.running = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Prometheus:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def query_range(self, expr: str, start: int, end: int, step: int) -> list[Series]:
        """Every series the expression returns over [start, end], asked a day at a time
        (Prometheus answers at most 11,000 points a series)."""
        merged: dict[str, Series] = {}
        chunk = step * 1440
        for begin in range(start, end + 1, chunk):
            query = urllib.parse.urlencode(
                {"query": expr, "start": begin, "end": min(end, begin + chunk - step), "step": step}
            )
            with urllib.request.urlopen(f"{self.url}/api/v1/query_range?{query}", timeout=300) as a:
                answer = json.load(a)
            for found in answer["data"]["result"]:
                key = json.dumps(found["metric"], sort_keys=True)
                points = [(int(t), float(v)) for t, v in found["values"]]
                merged.setdefault(key, (found["metric"], []))[1].extend(points)
        return list(merged.values())
