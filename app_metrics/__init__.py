"""Prometheus metrics for FastAPI services: fast pure-ASGI HTTP metrics, ``/metrics``,
domain metrics, health checks as metrics and multi-worker support.

    import app_metrics
    metrics = app_metrics.instrument(app, sms_providers=["twilio", "vonage"])
    metrics.sms.message("twilio", "success", cost=0.0079, duration_seconds=0.31)
"""

from .domain import PoolStats
from .health import HealthResult
from .http import HTTP_BUCKETS
from .instrument import Metrics, instrument
from .labels import OTHER, OVERFLOW, REDACTED, UNMATCHED
from .multiprocess import gunicorn_child_exit

__all__ = [
    "HTTP_BUCKETS",
    "OTHER",
    "OVERFLOW",
    "REDACTED",
    "UNMATCHED",
    "HealthResult",
    "Metrics",
    "PoolStats",
    "gunicorn_child_exit",
    "instrument",
]
__version__ = "0.1.0"
