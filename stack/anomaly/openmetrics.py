"""Series as an OpenMetrics file for ``promtool tsdb create-blocks-from openmetrics``: one
family a metric, each series' samples in time order, ``# EOF`` last."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

Points = Sequence[tuple[int, float]]
_SUFFIXES = {"_total": "counter", "_bucket": "histogram", "_count": "histogram",
             "_sum": "histogram"}  # fmt: skip


def family(series: str) -> tuple[str, str]:
    """``(family name, type)`` of a sample name with its labels (a recorded name: gauge)."""
    name = series.split("{")[0]
    for suffix, kind in _SUFFIXES.items():
        if name.endswith(suffix) and ":" not in name:
            return name[: -len(suffix)], kind
    return name, "gauge"


def number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:.10g}"


def write(series: Mapping[str, Points], path: Path) -> int:
    """Write the file; returns how many samples it holds."""
    families: dict[tuple[str, str], list[str]] = defaultdict(list)
    for name in series:
        families[family(name)].append(name)
    samples = 0
    with path.open("w") as out:
        for (name, kind), members in families.items():
            out.write(f"# TYPE {name} {kind}\n")
            for member in members:
                out.writelines(f"{member} {number(v)} {t}\n" for t, v in series[member])
                samples += len(series[member])
        out.write("# EOF\n")
    return samples


def series_name(labels: Mapping[str, str]) -> str:
    """``name{a="x",b="y"}`` from a label set with ``__name__``."""
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{labels['__name__']}{{{inner}}}"
