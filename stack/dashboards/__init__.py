"""The Grafana dashboards, as code, built with Grafana's own builder library
(grafana-foundation-sdk): `make generate` writes grafana/dashboards/<folder>/*.json from here and
`make lint` fails when a committed file differs.

One module per dashboard, each with its file (``PATH``, under grafana/dashboards; the folder is
Grafana's folder) and its ``build()``; what they share is in ``shared``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from . import anomaly, api_overview, business, host, postgresql, redis, slo, stack_health

MODULES = (anomaly, api_overview, business, host, postgresql, redis, slo, stack_health)
DASHBOARDS: dict[str, Callable[[], dict[str, Any]]] = {m.PATH: m.build for m in MODULES}


def files() -> dict[str, str]:
    """Relative path under grafana/dashboards -> JSON text."""
    return {path: json.dumps(build(), indent=2) + "\n" for path, build in DASHBOARDS.items()}
