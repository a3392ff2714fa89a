"""The personal-assistant API that the monitoring stack watches.

Users in PostgreSQL, sessions and phone verification codes in Redis, health endpoints,
and Prometheus metrics through ``app_metrics`` only.

    from assistant import Settings, create_app
    app = create_app(Settings.from_env())

Both names are imported on first use: ``python -m assistant.healthcheck``, which the
containers run every few seconds, then starts in 0.05 s rather than 1 s of CPU (the app's
imports: FastAPI, SQLAlchemy, Redis).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .config import Settings

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "Settings":
        from .config import Settings

        return Settings
    raise AttributeError(f"module 'assistant' has no attribute {name!r}")
