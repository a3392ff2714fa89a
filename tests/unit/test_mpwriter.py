"""The multiprocess writer gives the bytes of prometheus_client's MultiProcessCollector and
encoders, for every kind of file and gauge mode, as files change, appear and go."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from app_metrics import mpwriter
from app_metrics.mpwriter import MultiprocessWriter

INF, NAN = float("inf"), float("nan")
ODD = 'a "quoted" \\ back\nslash {brace} 100% %s ü'
DOC = 'Help with "quotes" \\ and\nnewline.'


def k(family: str, name: str = "", doc: str = DOC, **labels: str) -> str:
    return mmap_key(family, name or family, list(labels), list(labels.values()), doc)


def jobs(queue: str) -> str:
    return k("jobs", "jobs_total", queue=queue)


def buckets(method: str, counts: tuple[float, float, float], total: float) -> dict[str, Any]:
    entries = {k("wait_seconds", "wait_seconds_sum", method=method): total}
    for le, n in zip(("0.1", "1.0", "+Inf"), counts, strict=True):
        entries[k("wait_seconds", "wait_seconds_bucket", method=method, le=le)] = n
    return entries


# file name -> {key: value or (value, timestamp)}: every kind and mode, from two workers
# (pids 101 and 102) and the folded counts of dead ones
FILES: dict[str, dict[str, Any]] = {
    "counter_101.db": {jobs(ODD): 3.0, jobs("b"): 1e6},
    "counter_102.db": {jobs("c"): 2.5, jobs(ODD): 4.0},
    "counter_merged.db": {jobs("b"): 234_567.0},
    "histogram_101.db": {**buckets("GET", (1, 2, 0), 0.75), **buckets("POST", (0, 0, 1), 12.5)},
    "histogram_102.db": {**buckets("PUT", (5, 0, 0), 0.1), **buckets("GET", (0, 1, 1), 30.2)},
    "summary_101.db": {k("size", "size_count", k="a"): 2},
    "summary_102.db": {k("size", "size_count", k="b"): 1, k("size", "size_sum", k="b"): 1.5,
                       k("size", "size_sum", k="a"): 0.5},
    "gauge_all_101.db": {k("temp", zone="x"): NAN},
    "gauge_all_102.db": {k("temp", zone="x"): -0.0, k("temp", zone="y"): INF},
    "gauge_liveall_101.db": {k("live_temp"): 1.5},
    "gauge_min_101.db": {k("low", a="1"): 5.0, k("low", a="2"): -INF},
    "gauge_min_102.db": {k("low", a="1"): 3.0, k("low", a="2"): 7.0},
    "gauge_livemin_101.db": {k("live_low"): 2.0},
    "gauge_max_101.db": {k("high"): 5.0},
    "gauge_max_102.db": {k("high"): 1.5e16},
    "gauge_livemax_102.db": {k("live_high"): -3.0},
    "gauge_sum_101.db": {k("pool", p="db"): 4.0},
    "gauge_sum_102.db": {k("pool", p="db"): 6.0, k("pool", p="redis"): 1.0},
    "gauge_livesum_101.db": {k("busy", method="GET"): 1.0, k("busy", method="PUT"): 0.0},
    "gauge_livesum_102.db": {k("busy", method="GET"): 2.0},
}  # fmt: skip
# whose order follows their timestamps: merged by prometheus_client
MOSTRECENT: dict[str, dict[str, Any]] = {
    "gauge_mostrecent_101.db": {k("seen", a="x"): (1.0, 50.0), k("seen", a="never"): (9.0, 0.0)},
    "gauge_mostrecent_102.db": {k("seen", a="x"): (2.0, 40.0), k("seen", a="y"): (3.0, 60.0)},
    "gauge_livemostrecent_101.db": {k("live_seen"): (7.0, 10.0)},
    "gauge_livemostrecent_102.db": {k("live_seen"): (8.0, 20.0)},
}


def write(path: Path, values: dict[str, Any]) -> None:
    mapped = MmapedDict(str(path))
    for key, value in values.items():
        value, timestamp = value if isinstance(value, tuple) else (value, 0.0)
        mapped.write_value(key, value, timestamp)
    mapped.close()


class Merge:
    def __init__(self, paths: list[str]) -> None:
        self.paths = paths

    def collect(self) -> Any:
        return MultiProcessCollector.merge(self.paths, accumulate=True)


def theirs(paths: list[str], openmetrics: bool) -> str:
    if openmetrics:
        return openmetrics_latest(Merge(paths)).decode().removesuffix("# EOF\n")
    return generate_latest(Merge(paths)).decode()  # type: ignore[arg-type]


def files(directory: Path, chosen: dict[str, dict[str, Any]]) -> list[str]:
    for name, values in chosen.items():
        write(directory / name, values)
    return [str(directory / name) for name in chosen]


@pytest.fixture
def planned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails a write that would go through prometheus_client's merge."""
    monkeypatch.setattr(mpwriter, "MultiProcessCollector", None)


@pytest.mark.parametrize("openmetrics", [False, True])
def test_every_kind_and_gauge_mode_is_merged_and_written_as_prometheus_client_does(
    tmp_path: Path, openmetrics: bool, planned: None
) -> None:
    paths = files(tmp_path, FILES)
    writer = MultiprocessWriter()
    expected = theirs(paths, openmetrics)
    assert "# TYPE wait_seconds histogram" in expected and 'pid="102"' in expected
    assert writer.write(paths, openmetrics) == expected
    assert writer.write(paths, openmetrics) == expected  # nothing changed: served again


def test_mostrecent_gauges_are_merged_by_prometheus_client(tmp_path: Path) -> None:
    paths = files(tmp_path, {**FILES, **MOSTRECENT})
    expected = theirs(paths, False)
    assert 'seen{a="never"}' not in expected  # never set: left out, as prometheus_client does
    assert MultiprocessWriter().write(paths, False) == expected


def test_a_changed_a_new_and_a_removed_file_are_all_seen(tmp_path: Path, planned: None) -> None:
    paths = files(tmp_path, FILES)
    writer = MultiprocessWriter()
    writer.write(paths, False)
    write(tmp_path / "counter_101.db", {jobs("b"): 5.0})  # a value
    write(tmp_path / "gauge_max_101.db", {k("high", doc="Another help."): 2e16})  # a series
    assert writer.write(paths, False) == theirs(paths, False)
    paths += files(tmp_path, {"counter_103.db": {k("new_total", "new_total"): 1.0}})
    assert writer.write(paths, False) == theirs(paths, False)
    for gone in ("gauge_livesum_102.db", "counter_101.db"):  # a dead worker's files went
        (tmp_path / gone).unlink()
        paths.remove(str(tmp_path / gone))
        assert writer.write(paths, True) == theirs(paths, True)


def test_a_live_gauge_file_removed_while_listed_is_skipped(tmp_path: Path, planned: None) -> None:
    paths = files(tmp_path, FILES)
    (tmp_path / "gauge_livesum_101.db").unlink()  # mark_process_dead after the listing
    assert MultiprocessWriter().write(paths, False) == theirs(paths, False)


@pytest.mark.parametrize(
    "odd",
    [
        {"counter_101.db": {k("mixed", "mixed_total"): 1.0}, "gauge_all_101.db": {k("mixed"): 2.0}},
        {"gauge_sum_101.db": {k("job:rate:sum"): 1.0}},
        {"counter_101.db": {k("weird", "weird_total", le="not a number"): 1.0}},
    ],
    ids=["one family in two kinds", "a colon in a name", "a counter with an le label"],
)
def test_what_the_writer_does_not_cover_is_merged_by_prometheus_client(
    tmp_path: Path, odd: dict[str, dict[str, Any]]
) -> None:
    paths = files(tmp_path, {**FILES, **odd})
    assert MultiprocessWriter().write(paths, False) == theirs(paths, False)


def test_concurrent_scrapes_each_get_the_whole_exposition(tmp_path: Path, planned: None) -> None:
    paths = files(tmp_path, FILES)
    writer, expected = MultiprocessWriter(), theirs(paths, True)
    seen: list[str] = []

    def scrape() -> None:
        seen.extend(writer.write(paths, openmetrics) for openmetrics in (True, False) * 10)

    threads = [threading.Thread(target=scrape) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 80
    assert set(seen) == {expected, theirs(paths, False)}
