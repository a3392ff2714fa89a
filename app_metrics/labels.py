"""Bounded label values: a per-label cap, an overflow value, personal data kept out.

Label values are checked once, when a new combination is first seen; the hot path
is a dict lookup of already-checked children (see ``Family``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

UNMATCHED = "<unmatched>"  # a request that matched no route
OTHER = "<other>"  # a value outside a known, closed set (unknown HTTP method, status, ...)
OVERFLOW = "<overflow>"  # a value past the per-label cap
REDACTED = "<redacted>"  # a value that looks like personal data or a secret

DEFAULT_LABEL_CAP = 200
ROUTE_CAP = 1000  # distinct route templates: bounded by the app's own routes
_MAX_CACHED_CHILDREN = 20_000
_MAX_REMEMBERED_REJECTIONS = 1000

# Phone numbers (7+ digits, separators allowed), numeric ids (6+ digits), IP
# addresses, e-mail addresses, UUIDs and long hex or token-like strings never
# belong in a label value.
_PERSONAL = re.compile(
    r"\d{6,}"
    r"|(?:\d[\s().\-/]*){7,}"
    r"|[^@\s]+@[^@\s]+"
    r"|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-"
    r"|[0-9a-fA-F]{16,}"
    r"|(?=[\w\-]*\d)(?=[\w\-]*[A-Za-z])[\w\-]{24,}"
)


def looks_personal(value: str) -> bool:
    """True when a label value looks like a phone number, id, e-mail or token."""
    return _PERSONAL.search(value) is not None


class LabelGuard:
    """Caps the distinct values each label of one metric family may take.

    A value past the cap becomes ``<overflow>``, a value that looks personal
    becomes ``<redacted>``; each distinct rejected value is counted once in
    ``app_metrics_label_rejections_total``. ``endpoint`` holds route templates,
    which the developer wrote: it is not screened for personal data, and its
    cap is at least ``ROUTE_CAP``.
    """

    def __init__(
        self,
        metric: str,
        labelnames: Sequence[str],
        cap: int,
        on_reject: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self._metric = metric
        self._labels = [
            (name, max(cap, ROUTE_CAP) if name == "endpoint" else cap, name != "endpoint")
            for name in labelnames
        ]
        self._seen: list[set[str]] = [set() for _ in self._labels]
        self._rejected: list[set[str]] = [set() for _ in self._labels]
        self._on_reject = on_reject
        self._lock = threading.Lock()

    def clean(self, values: Sequence[Any]) -> tuple[str, ...]:
        out = []
        with self._lock:
            for i, ((name, cap, screen), raw) in enumerate(zip(self._labels, values, strict=True)):
                value = str(raw)
                seen = self._seen[i]
                if value not in seen:
                    if screen and looks_personal(value):
                        value = self._reject(i, name, value, "personal_data", REDACTED)
                    elif len(seen) >= cap:
                        value = self._reject(i, name, value, "overflow", OVERFLOW)
                    else:
                        seen.add(value)
                out.append(value)
        return tuple(out)

    def _reject(self, i: int, label: str, value: str, reason: str, replacement: str) -> str:
        rejected = self._rejected[i]
        if value not in rejected:
            if len(rejected) < _MAX_REMEMBERED_REJECTIONS:
                rejected.add(value)
            if self._on_reject is not None:
                self._on_reject(self._metric, label, reason)
        return replacement


class Family:
    """A labelled metric plus its constant labels, guard and a cache of children.

    ``labels(*values)`` returns the child for raw values; new combinations go
    through the guard once, then hit the cache.
    """

    __slots__ = ("_children", "_const", "_guard", "_metric")

    def __init__(self, metric: Any, const_values: tuple[str, ...], guard: LabelGuard) -> None:
        self._metric = metric
        self._const = const_values
        self._guard = guard
        self._children: dict[tuple[Any, ...], Any] = {}

    def labels(self, *values: Any) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._create(values)
        return child

    def _create(self, values: tuple[Any, ...]) -> Any:
        if not self._metric._labelnames:
            return self._metric
        clean = self._guard.clean(values)
        child = self._metric.labels(*clean, *self._const)
        if len(self._children) < _MAX_CACHED_CHILDREN:
            self._children[values] = child
        return child
