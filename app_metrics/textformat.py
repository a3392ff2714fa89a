"""The pieces of a fast exposition (text 0.0.4 and OpenMetrics): headers, prefixes, numbers.

prometheus_client's encoder re-validates and re-escapes every label of every
sample on each scrape (about 12 µs a line here). Label sets change rarely, so
each line's ``name{labels} `` prefix is built once and cached; a scrape then
only formats the values. The output is the same text that prometheus_client's
encoders give (labels sorted by name); the two formats differ only in the HELP
and TYPE lines and OpenMetrics' closing ``# EOF``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client.utils import floatToGoString

_MAX_PREFIXES = 200_000
_INF = float("inf")
# from here on floatToGoString writes an exponent; below it a whole count n is "n.0"
EXPONENT = 1_000_000


def escape_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def header(name: str, doc: str, kind: str, openmetrics: bool) -> str:
    """HELP and TYPE lines; OpenMetrics names a counter family without ``_total``."""
    if openmetrics:
        name = name.removesuffix("_total") if kind == "counter" else name
        doc = escape_value(doc)
    else:
        doc = doc.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {doc}\n# TYPE {name} {kind}\n"


def line_prefix(name: str, labels: Iterable[tuple[str, str]]) -> str:
    """``name{label="value",...} ``, labels sorted by name, values escaped."""
    inner = ",".join(f'{k}="{escape_value(v)}"' for k, v in sorted(labels))
    return f"{name}{{{inner}}} " if inner else f"{name} "


class Prefixes:
    """Cached ``name{label="value",...} `` prefixes, labels in name order."""

    def __init__(self, const: dict[str, str]) -> None:
        self._const = tuple(const.items())
        self._cache: dict[tuple[str, tuple[str, ...], tuple[str, ...]], str] = {}

    def get(self, name: str, labelnames: Sequence[str], values: tuple[str, ...]) -> str:
        key = (name, tuple(labelnames), values)
        prefix = self._cache.get(key)
        if prefix is None:
            prefix = line_prefix(name, (*zip(labelnames, values, strict=True), *self._const))
            if len(self._cache) >= _MAX_PREFIXES:
                self._cache.clear()
            self._cache[key] = prefix
        return prefix


def number(value: float) -> str:
    """``floatToGoString``: Python's repr, but an exponent from 1e6 up (and +Inf, NaN)."""
    if -_INF < value < EXPONENT:
        return repr(float(value))
    return floatToGoString(value)


def template(text: str) -> str:
    """``text`` as literal text of a printf-style template (``%`` is faster than ``format``)."""
    return text.replace("%", "%%")
