"""Debian's `victoria-metrics` as a throwaway process for the backup tests and the bench
(bench/victoriametrics.py): a data directory, a free port of 127.0.0.1, stopped by PID."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from stack.backup import Store
from stack.processes import free_port, http_ok, launch, log_tail, stop
from stack.webauth import USER, authorization

BINARY = "victoria-metrics"
START_TIMEOUT = 15.0
MERGE_TIMEOUT = 120.0


class VictoriaMetrics:
    """One single-node process on ``data``; with ``password``, basic auth for the monitoring
    user, the password passed in its environment (``-envflag.enable``), never in argv;
    ``flags``: more of its flags (the stack's -dedup.minScrapeInterval)."""

    def __init__(
        self, data: Path, log: Path, password: str | None = None, flags: tuple[str, ...] = ()
    ) -> None:
        port = free_port()
        argv = [BINARY, f"-storageDataPath={data}", f"-httpListenAddr=127.0.0.1:{port}",
                "-search.disableCache", "-search.latencyOffset=1s", *flags]  # fmt: skip
        environ = None
        self.headers: dict[str, str] = {}
        if password is not None:
            argv += ["-envflag.enable", f"-httpAuth.username={USER}"]
            environ = {"PATH": "/usr/bin:/bin", "httpAuth_password": password}
            self.headers = {"Authorization": authorization(password)}
        self.store = Store(f"http://127.0.0.1:{port}", data, self.headers)
        self.running = launch(argv, log, environ)
        deadline = time.monotonic() + START_TIMEOUT
        while not http_ok(f"{self.store.url}/health", timeout=1):
            if not self.running.alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{BINARY} did not start:\n{log_tail(log)}")
            time.sleep(0.05)

    @classmethod
    def running_at(cls, url: str) -> VictoriaMetrics:
        """One started elsewhere (the stack's, without auth), for the same calls."""
        found = cls.__new__(cls)
        found.headers = {}
        found.store = Store(url, Path(), found.headers)
        return found

    @property
    def pid(self) -> int:
        return self.running.pid

    def stop(self) -> None:
        stop(self.running)

    def call(self, path: str, body: bytes | None = None, **params: str) -> bytes:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        request = urllib.request.Request(
            f"{self.store.url}{path}{query}", data=body, headers=self.headers
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.read()  # type: ignore[no-any-return]

    def ingest(self, lines: Iterable[str]) -> None:
        """Prometheus text lines with explicit timestamps (ms)."""
        self.call("/api/v1/import/prometheus", "\n".join(lines).encode() + b"\n")

    def flush(self) -> None:
        self.call("/internal/force_flush")

    def merge(self) -> None:
        """A forced merge of every partition, then until no merge has run for a second (they
        run in the background)."""
        self.call("/internal/force_merge")
        deadline = time.monotonic() + MERGE_TIMEOUT
        quiet = 0
        while quiet < 5:
            text = self.call("/metrics").decode()
            busy = metric(text, "vm_active_force_merges") + metric(text, "vm_active_merges")
            quiet = 0 if busy else quiet + 1
            if time.monotonic() > deadline:
                raise RuntimeError(f"merges still running after {MERGE_TIMEOUT:g} s")
            time.sleep(0.2)

    def series_count(self) -> int:
        return int(json.loads(self.call("/api/v1/series/count"))["data"][0])

    def export(self, match: str = '{__name__!=""}') -> list[str]:
        """Every series with its samples, one JSON line each, sorted."""
        body = self.call("/api/v1/export", urllib.parse.urlencode({"match[]": match}).encode())
        return sorted(body.decode().splitlines())

    def query_range(self, query: str, start: int, end: int, step: str) -> object:
        body = self.call("/api/v1/query_range", query=query, start=str(start), end=str(end),
                         step=step)  # fmt: skip
        return json.loads(body)["data"]


def metric(text: str, name: str) -> float:
    """The sum of ``name``'s samples in an exposition text (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == name or key.startswith(name + "{"):
            total += float(value)
    return total
