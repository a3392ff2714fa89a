"""`make backup` of the running global view, restored into an empty store: the same answers
(every series' samples and the dashboards' kind of range query, over a window that ended
before the backup)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from stack import ROOT
from stack.backup import restore_store
from tests.stack.victoriametrics import VictoriaMetrics

from ..conftest import FIGURES, until
from ..runtimes import ENV, Stack
from .conftest import url_of

pytestmark = pytest.mark.integration

WINDOW = 300  # seconds of history compared
SETTLED = 10  # seconds of samples past the window in the store before the backup (remote
# write has then delivered every replica's samples of the window)
QUERIES = ("sum by (job) (rate(http_requests_total[1m]))", "up",
           "max by (job) (scrape_duration_seconds)")  # fmt: skip


def newest(store: VictoriaMetrics) -> float:
    """The newest sample of `up` the store holds (epoch seconds; 0 when none)."""
    lines = store.call("/api/v1/export", None, **{"match[]": "up"}).decode().splitlines()
    return max((t / 1000 for line in lines for t in json.loads(line)["timestamps"]), default=0)


def flat(data: object) -> dict[tuple[str, float], float]:
    """A range query's answer: (series, timestamp) -> value."""
    return {
        (json.dumps(r["metric"], sort_keys=True), t): float(v)
        for r in data["result"]  # type: ignore[index]
        for t, v in r["values"]
    }


def test_a_backup_restored_into_an_empty_store_answers_the_same(ha: Stack) -> None:
    live = VictoriaMetrics.running_at(url_of(ha, "victoriametrics"))
    with tempfile.TemporaryDirectory(prefix="ha-backup-") as scratch:
        folder = Path(scratch) / "backup"
        end = int(time.time())
        start = end - WINDOW
        until(lambda: newest(live) > end + SETTLED, 60.0, 1.0,
              f"the store holds samples {SETTLED} s past the window")  # fmt: skip
        begin = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "stack", "backup", "--env", ENV, "--runtime", ha.runtime_flag,
             "--topology", "ha", "--dir", str(folder)],
            cwd=ROOT, env=ha.environ, capture_output=True, text=True, timeout=300, check=True,
        )  # fmt: skip
        took = time.monotonic() - begin
        restore_store(folder, Path(scratch) / "data", say=lambda _: None)
        restored = VictoriaMetrics(Path(scratch) / "data", Path(scratch) / "vm.log",
                                   flags=("-dedup.minScrapeInterval=1s",))  # fmt: skip
        try:
            match = '{job=~".+"}'
            window = {"start": str(start), "end": str(end)}
            before = sorted(live.call("/api/v1/export", None, **{"match[]": match}, **window)
                            .decode().splitlines())  # fmt: skip
            after = sorted(restored.call("/api/v1/export", None, **{"match[]": match}, **window)
                           .decode().splitlines())  # fmt: skip
            assert before and after == before, f"{len(before)} series live, {len(after)} restored"
            for expr in QUERIES:
                got, want = (flat(s.query_range(expr, start, end, "15s")) for s in (restored, live))
                assert got.keys() == want.keys() and want, expr
                # a sum's last digit depends on the order the series are added in
                assert all(math.isclose(got[k], want[k], rel_tol=1e-12) for k in want), expr
        finally:
            restored.stop()
    FIGURES.append(
        f"HA: make backup of the global view in {took:.1f} s; restored into an empty store, "
        f"{len(before)} series over {WINDOW} s and {len(QUERIES)} range queries identical"
    )
