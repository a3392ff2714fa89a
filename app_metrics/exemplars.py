"""The trace id of the current OpenTelemetry span, for the request duration's exemplars.

OpenTelemetry is optional. ``current_trace_id`` is resolved once, at import: None when the
OpenTelemetry SDK is not installed (FastAPI depends on ``opentelemetry-api`` alone, which
records no trace), so the middleware's request path is then one ``is None`` check; else a
function that returns the current span's trace id as 32 lowercase hex digits when a valid,
sampled span is current, and None otherwise.

An exemplar carries one label, ``trace_id`` (8 + 32 characters with its quotes and ``=``),
well within OpenMetrics' limit of 128 characters for an exemplar's label set.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.util import find_spec

from prometheus_client.utils import floatToGoString

LABEL = "trace_id"
Exemplar = tuple[str, float, float]  # trace id, observed seconds, Unix time
Exemplars = list[Exemplar | None]  # per bucket of a histogram, the latest


try:
    from opentelemetry.trace import get_current_span

    _SDK = find_spec("opentelemetry.sdk") is not None
except ImportError:  # OpenTelemetry is not installed
    _SDK = False


def _trace_id() -> str | None:
    """The current span's trace id, if it is valid and sampled."""
    context = get_current_span().get_span_context()
    if context.trace_flags & 1 and context.is_valid:  # sampled, and not the invalid span
        return format(context.trace_id, "032x")
    return None


current_trace_id: Callable[[], str | None] | None = _trace_id if _SDK else None


def latest(into: Exemplars, exemplars: Exemplars) -> None:
    """Keep in ``into`` the later of the two exemplars of each bucket."""
    for i, exemplar in enumerate(exemplars):
        if exemplar is not None:
            known = into[i]
            if known is None or known[2] < exemplar[2]:
                into[i] = exemplar


def suffix(exemplar: Exemplar | None) -> str:
    """A bucket line's OpenMetrics exemplar (`` # {trace_id="..."} value timestamp``), as
    prometheus_client's OpenMetrics encoder writes it; "" for none."""
    if exemplar is None:
        return ""
    trace_id, seconds, at = exemplar
    return f' # {{{LABEL}="{trace_id}"}} {floatToGoString(seconds)} {at}'
