"""The global view (VictoriaMetrics, fed by both Prometheus replicas' remote write), proven by
stopping things: a replica stopped for a minute leaves no gap and no double sample; the store
stopped for two minutes loses nothing once remote write catches up. Every dashboard query
answers from it, and `make status` names every replica, peer and the global view."""

from __future__ import annotations

import collections
import itertools
import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from stack import ROOT

from ..conftest import FIGURES, query, traffic, until
from ..runtimes import ENV, Stack
from ..test_dashboards import cases, fill
from .conftest import IN_CI, url_of

pytestmark = pytest.mark.integration

STORE = "victoriametrics"
SERIES = 'process_cpu_seconds_total{job="node"}'  # a counter, scraped every second in dev
INTERVAL = 1.0  # dev's SCRAPE_INTERVAL, the store's -dedup.minScrapeInterval
REPLICA_OUTAGE = 20.0 if IN_CI else 60.0
STORE_OUTAGE = 40.0 if IN_CI else 120.0
CATCH_UP = 120.0


def samples(stack: Stack, start: float, end: float) -> list[float]:
    """The store's samples of SERIES between ``start`` and ``end`` (epoch seconds): their
    timestamps, sorted (one series: the replica label never reaches the store)."""
    params = urllib.parse.urlencode({"match[]": SERIES, "start": f"{start:.3f}",
                                     "end": f"{end:.3f}"})  # fmt: skip
    with urllib.request.urlopen(f"{url_of(stack, STORE)}/api/v1/export?{params}", timeout=30) as r:
        lines = [json.loads(line) for line in r.read().splitlines() if line.strip()]
    assert len(lines) <= 1, f"{len(lines)} series of {SERIES}: {[s['metric'] for s in lines]}"
    return sorted(t / 1000 for t in lines[0]["timestamps"]) if lines else []


def gaps_and_doubles(stamps: list[float]) -> tuple[float, int]:
    """The longest gap between consecutive samples, and how many scrape intervals hold more
    than one sample."""
    gap = max((b - a for a, b in itertools.pairwise(stamps)), default=float("inf"))
    per_interval = collections.Counter(int(t // INTERVAL) for t in stamps)
    return gap, sum(1 for n in per_interval.values() if n > 1)


def test_one_replica_stopped_leaves_no_gap_and_no_double(ha: Stack) -> None:
    begin = time.time()
    ha.stop("prometheus")
    time.sleep(REPLICA_OUTAGE)
    end = time.time()
    ha.start("prometheus")
    stamps = until(lambda: (s := samples(ha, begin, end)) and s[-1] > end - 2 * INTERVAL and s,
                   30.0, 1.0, f"the store has {SERIES} up to the replica's restart")  # fmt: skip
    gap, doubles = gaps_and_doubles(stamps)
    assert stamps[0] < begin + 2 * INTERVAL, f"the first sample {stamps[0] - begin:.1f} s late"
    assert gap <= 2 * INTERVAL, f"a gap of {gap:.2f} s with one replica stopped"
    assert doubles == 0, f"{doubles} scrape intervals hold two samples: deduplication failed"
    FIGURES.append(
        f"HA: one Prometheus replica stopped {REPLICA_OUTAGE:g} s: the global view holds "
        f"{len(stamps)} samples of a {INTERVAL:g} s-scraped counter, longest gap {gap:.2f} s, "
        f"{doubles} interval(s) with two samples"
    )


def test_the_store_stopped_loses_nothing_once_remote_write_catches_up(ha: Stack) -> None:
    begin = time.time()
    ha.stop(STORE)
    time.sleep(STORE_OUTAGE)
    end = time.time()
    ha.start(STORE)
    caught_up = time.time()
    stamps = until(lambda: (s := samples(ha, begin, end)) and s[-1] > end - 2 * INTERVAL and s,
                   CATCH_UP, 1.0, "remote write caught up")  # fmt: skip
    caught_up = time.time() - caught_up
    # what a replica itself holds for the window: the store must hold as many intervals
    local = query(ha, f"count_over_time({SERIES}[{int(end - begin)}s])", time=f"{end:.3f}")
    held = max(int(float(r["value"][1])) for r in local)
    gap, doubles = gaps_and_doubles(stamps)
    assert gap <= 2 * INTERVAL, f"a gap of {gap:.2f} s over the store's outage"
    assert doubles == 0
    assert len(stamps) >= held - 2, f"{len(stamps)} samples in the store, {held} in a replica"
    FIGURES.append(
        f"HA: the store stopped {STORE_OUTAGE:g} s: {len(stamps)} samples over the outage once "
        f"remote write caught up ({caught_up:.1f} s after the restart; a replica holds {held}), "
        f"longest gap {gap:.2f} s"
    )


@pytest.fixture(scope="module")
def busy(ha: Stack) -> Iterator[Stack]:
    """Extra traffic while the panels are read (a 5xx panel's 1-minute window holds one)."""
    with traffic(ha):
        yield ha


@pytest.mark.parametrize(("where", "expr", "board"), cases(), ids=[c[0] for c in cases()])
def test_every_panel_query_answers_from_the_global_view(
    busy: Stack, where: str, expr: str, board: dict
) -> None:
    store = SimpleNamespace(prometheus=url_of(busy, STORE))
    filled = fill(store, expr, board)  # type: ignore[arg-type]
    until(lambda: query(store, filled), 90.0, 1.0,  # type: ignore[arg-type]
          f"{where}: no data from the global view for {filled}")  # fmt: skip


def test_status_lists_every_replica_peer_and_the_global_view(ha: Stack) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "stack", "status", "--env", ENV, "--runtime", ha.runtime_flag,
         "--topology", "ha"],
        cwd=ROOT, env=ha.environ, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    for component in ("prometheus", "prometheus-2", "alertmanager", "alertmanager-2",
                      "alertmanager-3", STORE):  # fmt: skip
        assert url_of(ha, component) in done.stdout, f"{component}:\n{done.stdout}"
    assert f"global view: {STORE} {url_of(ha, STORE)}" in done.stdout, done.stdout
    assert f"rules on the global view: vmalert {url_of(ha, 'vmalert')}" in done.stdout
