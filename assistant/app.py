"""``create_app(settings)``: the personal-assistant API, instrumented through app_metrics.

Run it with ``python -m assistant``, or ``uvicorn --factory assistant.app:create_app``
(settings from the environment; ``--workers N`` with ``PROMETHEUS_MULTIPROC_DIR``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

import app_metrics

from . import errors
from .config import Settings
from .db import Database, is_unavailable
from .redis_client import create_redis
from .routes import health, sessions, users
from .services import Services
from .sessions import SessionStore
from .verification import CodeSender, PhoneVerifications

log = logging.getLogger("assistant")


async def log_instead_of_sms(phone: str, code: str) -> None:
    """Until SMS delivery exists: say a code was issued, without the code or the number."""
    log.info(
        "verification code issued for a phone ending in %s (SMS delivery not built)", phone[-2:]
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    svc: Services = app.state.services
    try:
        await svc.db.ensure_schema()
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        # start anyway: health says unhealthy, DB routes answer 503, first use creates it
        log.warning("database unavailable at start (%s); schema creation deferred", exc)
    try:
        yield
    finally:
        await svc.redis.aclose()
        await svc.db.dispose()


def create_app(
    settings: Settings | None = None,
    *,
    registry: CollectorRegistry | None = None,
    send_code: CodeSender = log_instead_of_sms,
) -> FastAPI:
    """The app; ``registry`` defaults to prometheus_client's global one (one app per process)."""
    settings = settings or Settings.from_env()
    app = FastAPI(title="Personal assistant API", version="0.1.0", lifespan=lifespan)
    errors.install(app)
    for module in (users, sessions, health):
        app.include_router(module.router)

    metrics = app_metrics.instrument(
        app,
        registry=registry,
        token=settings.metrics_token,
        token_file=settings.metrics_token_file,
        exclude_paths=[route.path for route in health.router.routes],  # probes, not API traffic
        source_timeout=settings.metrics_source_timeout_seconds,
        source_ttl=settings.metrics_source_ttl_seconds,
    )
    db = Database(settings)
    redis = create_redis(settings)
    session_store = SessionStore(redis, settings.session_ttl_seconds)
    verifications = PhoneVerifications(
        redis, settings.verification_code_ttl_seconds, settings.verification_max_attempts
    )

    async def ping_redis() -> None:
        await redis.ping()

    async def pool_stats() -> app_metrics.PoolStats:
        return db.pool_stats()

    metrics.health.add("database", db.ping, timeout=settings.health_timeout_seconds)
    metrics.health.add("redis", ping_redis, timeout=settings.health_timeout_seconds)
    metrics.database.pool_from(pool_stats)
    metrics.users.active_sessions_from(session_store.count_active)
    metrics.users.registered_users_from(db.count_users)

    app.state.services = Services(
        settings=settings,
        db=db,
        redis=redis,
        sessions=session_store,
        verifications=verifications,
        send_code=send_code,
        metrics=metrics,
    )
    return app
