"""The multiprocess exposition: every worker's files merged and written as text or OpenMetrics,
the bytes prometheus_client's ``MultiProcessCollector`` and encoders give, without their cost
per sample.

prometheus_client decodes every entry of every file (its JSON key included) into a ``Sample``,
merges them in nested dictionaries and encodes each line from scratch. Here a file's layout
(the keys and where its values sit) is parsed once and kept while its keys stay the same
(values change in place; new keys are appended), so a scrape reads all of a file's values with
one ``struct`` call. The merge itself depends only on the layouts: it is planned once (which
values add up to which line, prometheus_client's order of families and samples, its rules per
gauge mode) into a printf-style template, and a scrape sums the values file by file in C
(``map``), cumulates the histograms' buckets and formats the template. When no value changed,
the last exposition is served again.

Directories this plan does not cover (``mostrecent`` gauges, whose order follows their
timestamps; a family in files of two kinds; names that need escaping; two keys of one series in
a file) go through prometheus_client's merge, written by ``FamilyWriter``: the same bytes.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import threading
from collections.abc import Sequence
from itertools import accumulate
from operator import add, itemgetter
from typing import Any

from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.utils import floatToGoString

from . import mpfiles
from .families import PLAIN, FamilyWriter, headers
from .textformat import EXPONENT, line_prefix, number, template

_MAX_KEYS = 200_000
_SUMMED = frozenset(("counter", "histogram", "summary", "gauge_sum", "gauge_livesum"))
_KEEP_PID = frozenset(("gauge_all", "gauge_liveall"))
_INT = struct.Struct("i")
_PAGE = 4096

Labels = tuple[tuple[str, str], ...]


class _Unsupported(Exception):
    """This directory goes through prometheus_client's merge."""


class _Series:
    """One distinct sample of the files (family, name, sorted labels) and its line prefixes."""

    __slots__ = ("bound", "bucket", "family", "group", "labels", "name", "prefix", "with_pid")

    def __init__(self, family: str, name: str, labels: Labels) -> None:
        if not all(PLAIN.fullmatch(k) for k in (family, name, *dict(labels))):
            raise _Unsupported
        self.family, self.name, self.labels = family, name, labels
        self.prefix = line_prefix(name, labels)
        self.with_pid: dict[str, str] = {}
        # in a histogram, a bucket: its bound, its labels without ``le`` and its line as
        # prometheus_client writes it (named after the family, the bound written anew)
        le = dict(labels).get("le")
        self.group = labels if le is None else tuple(p for p in labels if p[0] != "le")
        try:
            self.bound = None if le is None else float(le)
        except ValueError:
            raise _Unsupported from None
        self.bucket = self.prefix
        if self.bound is not None:
            bucket_labels = (*self.group, ("le", floatToGoString(self.bound)))
            self.bucket = line_prefix(family + "_bucket", bucket_labels)

    def line(self, pid: str) -> str:
        """The prefix with the ``pid`` label an ``all`` gauge gets, or without one."""
        if not pid:
            return self.prefix
        prefix = self.with_pid.get(pid)
        if prefix is None:
            prefix = self.with_pid[pid] = line_prefix(self.name, (*self.labels, ("pid", pid)))
        return prefix


class _Layout:
    """The keys of one file and the ``struct``s that read its keys and its values."""

    def __init__(self, entries: list[tuple[_Series, str]], lengths: list[int], used: int) -> None:
        self.entries = entries  # (series, HELP) per entry
        self.lengths = lengths
        self.used = used
        skips = [4 + n + (8 - (n + 4) % 8) for n in lengths]
        self.keys = struct.Struct(
            "=8x" + "".join(f"4x{n}s{s - 4 - n}x16x" for n, s in zip(lengths, skips, strict=True))
        )
        self.values = struct.Struct("=8x" + "".join(f"{s}xdd" for s in skips))


class MultiprocessWriter:
    """Writes the exposition of a multiprocess directory's files; one scrape at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[bytes, tuple[_Series, str]] = {}  # a file key: its series and HELP
        self._series: dict[tuple[str, str, Labels], _Series] = {}
        self._layouts: dict[str, tuple[_Layout, tuple[bytes, ...]]] = {}
        self._plan: tuple[tuple[Any, ...], _Plan] | None = None
        self._fallback = FamilyWriter()

    def write(self, paths: Sequence[str], openmetrics: bool) -> str:
        """The files' families (without OpenMetrics' ``# EOF``), in the order given."""
        with self._lock:
            try:
                return self._write(paths, openmetrics)
            except _Unsupported:
                merged = MultiProcessCollector.merge(paths, accumulate=True)
                return self._fallback.write(merged, openmetrics)

    def _write(self, paths: Sequence[str], openmetrics: bool) -> str:
        files, values = [], []
        for path in paths:
            kind, pid = _kind(path)
            try:
                layout, file_values = self._read(path)
            except FileNotFoundError:
                if kind.startswith("gauge_live"):
                    continue  # its process was marked dead meanwhile, as prometheus_client allows
                raise
            files.append((path, kind, pid, layout))
            values.append(file_values)
        for gone in set(self._layouts) - set(paths):
            del self._layouts[gone]
        signature = tuple(files)
        if self._plan is None or self._plan[0] != signature:
            self._plan = (signature, _Plan([f[1:] for f in files]))
        return self._plan[1].text(values, openmetrics)

    def _read(self, path: str) -> tuple[_Layout, tuple[float, ...]]:
        """The file's layout (kept while its keys stay the same) and its values and timestamps,
        read from a read-only map of the file (nothing copied)."""
        descriptor = mpfiles.open_nofollow(path, os.O_RDONLY)
        try:
            size = os.fstat(descriptor).st_size
            if size < 8:  # being created: nothing in it yet
                return _Layout([], [], 8), ()
            data = mmap.mmap(descriptor, size, access=mmap.ACCESS_READ)
        finally:
            os.close(descriptor)
        with data:
            used = min(_INT.unpack_from(data, 0)[0], size)
            known = self._layouts.get(path)
            if known is not None and used >= known[0].used:
                if known[0].keys.unpack_from(data) != known[1]:
                    known = None  # another file in its place: parsed from the start
            else:
                known = None
            if known is None or used > known[0].used:
                layout = self._parse(data, max(used, 8), path, known[0] if known else None)
                known = self._layouts[path] = (layout, layout.keys.unpack_from(data))
            return known[0], known[0].values.unpack_from(data)

    def _parse(self, data: Any, used: int, path: str, before: _Layout | None) -> _Layout:
        """The layout of ``data``, parsing only what follows the known part ``before``."""
        entries = list(before.entries) if before else []
        lengths = list(before.lengths) if before else []
        pos = before.used if before else 8
        while pos < used:
            (length,) = _INT.unpack_from(data, pos)
            if length < 0 or pos + 4 + length + 16 > used:
                raise RuntimeError(f"{path} is corrupt at byte {pos}")
            raw = data[pos + 4 : pos + 4 + length]
            entries.append(self._keys.get(raw) or self._key(raw))
            lengths.append(length)
            pos += 4 + length + (8 - (length + 4) % 8) + 16
        return _Layout(entries, lengths, pos)

    def _key(self, raw: bytes) -> tuple[_Series, str]:
        family, name, labels, doc = json.loads(raw)
        if len(self._keys) >= _MAX_KEYS:
            self._keys, self._series = {}, {}
        identity = (family, name, tuple(sorted(labels.items())))
        series = self._series.get(identity)
        if series is None:
            series = self._series[identity] = _Series(*identity)
        key = self._keys[raw] = (series, doc)
        return key


class _Slot:
    __slots__ = ("pid", "series", "sources")

    def __init__(self, series: _Series, pid: str) -> None:
        self.series, self.pid = series, pid
        self.sources: list[tuple[int, int]] = []  # (file, entry) in prometheus_client's order


class _Family:
    __slots__ = ("doc", "kind", "name", "slots")

    def __init__(self, name: str, doc: str, kind: str) -> None:
        self.name, self.doc, self.kind = name, doc, kind
        self.slots: dict[Any, _Slot] = {}


class _Plan:
    """How one set of file layouts merges: the exposition's template, one placeholder per
    line, and where each line's value comes from."""

    def __init__(self, files: list[tuple[str, str, _Layout]]) -> None:
        self._segments: list[tuple[str, ...]] = []  # a family's (name, HELP, type), or a prefix
        sources: list[list[tuple[int, int]]] = []  # per line: the values it sums, one per file
        self._points: list[tuple[int, str, list[tuple[int, int]]]] = []  # other rules, by line
        self._cumulative: list[tuple[int, int]] = []  # bucket lines [start, end), count at end
        start, previous = 0, ""
        for family in _families(files):
            self._segments.append((family.name, family.doc, family.kind.partition("_")[0]))
            mode = _mode(family.kind)
            for prefix, slot, role in _lines(family):
                line = len(sources)
                self._segments.append((prefix,))
                sources.append([])
                if role == "bucket" and previous != "bucket":
                    start = line
                elif role == "count":
                    self._cumulative.append((start, line))
                previous = role
                if slot is None:
                    continue
                files_of = {f for f, _ in slot.sources}
                if mode == "sum" and len(files_of) == len(slot.sources):
                    sources[line] = slot.sources
                else:
                    self._points.append((line, mode, slot.sources))
        self._size = len(sources)
        self._getters = _getters([layout for _, _, layout in files], sources)
        self._templates: dict[bool, str] = {}
        self._last: tuple[list[tuple[float, ...]], dict[bool, str]] = ([], {})

    def text(self, values: list[tuple[float, ...]], openmetrics: bool) -> str:
        """The exposition of the files' ``values`` (values and timestamps, per file)."""
        known, texts = self._last
        if known != values:
            texts = {}
            self._last = (values, texts)
        text = texts.get(openmetrics)
        if text is None:
            text = texts[openmetrics] = self._template(openmetrics) % tuple(self._numbers(values))
        return text

    def _numbers(self, values: list[tuple[float, ...]]) -> Any:
        out = [0.0] * self._size  # prometheus_client adds to 0.0 too
        for getter, file_values in zip(self._getters, values, strict=True):
            if getter is not None:
                out = list(map(add, out, getter((*file_values, 0.0))))
        for line, mode, sources in self._points:
            picked = [values[f][2 * e] for f, e in sources]
            value = picked[0] if mode != "sum" else 0.0 + picked[0]
            for v in picked[1:]:
                if mode == "sum":
                    value += v
                elif mode == "all" or (v < value if mode == "min" else v > value):
                    value = v
            out[line] = value
        for start, end in self._cumulative:
            out[start:end] = accumulate(out[start:end])
            out[end] = out[end - 1]
        total = sum(out)
        if out and total == total and max(out) < EXPONENT and min(out) > -_INF:
            return map(repr, out)  # no NaN, no infinity, no exponent due: floatToGoString's text
        return map(number, out)

    def _template(self, openmetrics: bool) -> str:
        text = self._templates.get(openmetrics)
        if text is None:
            parts = [
                template(headers(*segment, openmetrics))
                if len(segment) == 3
                else template(segment[0]) + "%s\n"
                for segment in self._segments
            ]
            text = self._templates[openmetrics] = "".join(parts)
        return text


_INF = float("inf")


def _getters(layouts: list[_Layout], sources: list[list[tuple[int, int]]]) -> list[Any]:
    """Per file: picks from its values the value each line sums (0.0 where it has none)."""
    nones = [2 * len(layout.entries) for layout in layouts]  # the 0.0 appended to the values
    picks = [[none] * len(sources) for none in nones]
    for line, line_sources in enumerate(sources):
        for f, entry in line_sources:
            picks[f][line] = 2 * entry
    getters: list[Any] = []
    for file_picks, none in zip(picks, nones, strict=True):
        if all(p == none for p in file_picks):
            getters.append(None)
        elif len(file_picks) == 1:
            getters.append(lambda values, at=file_picks[0]: (values[at],))
        else:
            getters.append(itemgetter(*file_picks))
    return getters


def _families(files: list[tuple[str, str, _Layout]]) -> list[_Family]:
    """The families in order of first appearance, each entry a source of its slot."""
    families: dict[str, _Family] = {}
    for index, (kind, pid, layout) in enumerate(files):
        if kind.endswith("mostrecent"):
            raise _Unsupported  # its order follows the timestamps
        keep_pid = kind in _KEEP_PID
        for entry, (series, doc) in enumerate(layout.entries):
            family = families.get(series.family)
            if family is None:
                family = families[series.family] = _Family(series.family, doc, kind)
            elif family.kind != kind:
                raise _Unsupported  # one family in files of two kinds
            key = (series, pid) if keep_pid else series
            slot = family.slots.get(key)
            if slot is None:
                slot = family.slots[key] = _Slot(series, pid if keep_pid else "")
            slot.sources.append((index, entry))
    return list(families.values())


def _mode(kind: str) -> str:
    if kind in _SUMMED:
        return "sum"
    return "all" if kind in _KEEP_PID else kind.removeprefix("gauge_").removeprefix("live")


def _lines(family: _Family) -> list[tuple[str, _Slot | None, str]]:
    """(prefix, slot, role) per line in prometheus_client's order. A histogram's label set:
    its other samples (``_sum``), its buckets by bound, then ``_count`` (no slot: derived);
    a summary's samples by label set; others in order of first appearance."""
    kind = family.kind.partition("_")[0]
    if kind not in ("histogram", "summary"):
        return [(s.series.line(s.pid), s, "value") for s in family.slots.values()]
    groups: dict[Labels, list[tuple[str, _Slot | None, str]]] = {}
    buckets: dict[Labels, dict[float, _Slot]] = {}
    for slot in family.slots.values():
        series = slot.series
        if kind == "summary" or series.bound is None:
            group = series.labels if kind == "summary" else series.group
            groups.setdefault(group, []).append((series.prefix, slot, "value"))
        elif buckets.setdefault(series.group, {}).setdefault(series.bound, slot) is not slot:
            raise _Unsupported  # two bounds written alike ("1" and "1.0")
    for group, by_bound in buckets.items():
        lines = groups.setdefault(group, [])
        lines += [(by_bound[b].series.bucket, by_bound[b], "bucket") for b in sorted(by_bound)]
        lines.append((line_prefix(family.name + "_count", group), None, "count"))
    return [line for lines in groups.values() for line in lines]


def _kind(path: str) -> tuple[str, str]:
    """(kind, pid) of a file: ``counter``, ``gauge_livesum``, ...; pid "" for a merged file."""
    name = os.path.basename(path)
    match = mpfiles.PROCESS_FILE.match(name) or mpfiles.MERGED_FILE.match(name)
    if match is None:
        raise _Unsupported
    return match.group(1), match.group(2) if match.re is mpfiles.PROCESS_FILE else ""
