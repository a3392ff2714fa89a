"""The personal-assistant API that the monitoring stack watches.

Users in PostgreSQL, sessions and phone verification codes in Redis, health endpoints,
and Prometheus metrics through ``app_metrics`` only.

    from assistant import Settings, create_app
    app = create_app(Settings.from_env())
"""

from .app import create_app
from .config import Settings

__all__ = ["Settings", "create_app"]
