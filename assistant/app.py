"""``create_app(settings)``: the personal-assistant API, instrumented through app_metrics.

Run it with ``python -m assistant``, or ``uvicorn --factory assistant.app:create_app``
(settings from the environment; ``--workers N`` with ``PROMETHEUS_MULTIPROC_DIR``).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp

import app_metrics

from . import errors, oauth, redis_client, tracing
from .addresses import own_addresses
from .auth import holds_api_token
from .config import Settings
from .db import Database, is_unavailable
from .gate import BodyGate
from .redis_client import create_redis
from .routes import debug, health, sessions, users
from .routes import oauth as oauth_routes
from .routes import sms as sms_routes
from .routes import tasks as task_routes
from .services import Services
from .sessions import SessionStore
from .sms import SmsService
from .tasks import TASK_KINDS, TaskService
from .verification import CodeSender, PhoneVerifications
from .worker import Loop, Worker, create_worker_redis

log = logging.getLogger("assistant")


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
    if svc.settings.runs_worker:
        svc.worker.start()  # the delivery loops: SMS and task queues
    # what the start made lives as long as the process: out of the collector's full passes,
    # which otherwise walk it all while every thread, the metrics listener's too, waits
    gc.freeze()
    try:
        yield
    finally:
        await svc.worker.stop()
        await svc.redis.aclose()
        await svc.db.dispose()


def create_app(
    settings: Settings | None = None,
    *,
    registry: CollectorRegistry | None = None,
    send_code: CodeSender | None = None,
) -> FastAPI:
    """The app; ``registry`` defaults to prometheus_client's global one (one app per process).
    ``send_code`` replaces the SMS that carries verification codes."""
    settings = settings or Settings.from_env()
    docs = settings.api_docs  # off unless asked for (the dev stack): no map of the API
    app = FastAPI(
        title="Personal assistant API",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    errors.install(app)
    redis_client.install(app)
    app.add_middleware(
        BodyGate,
        authorized=lambda authorization: holds_api_token(authorization, settings.api_token),
        max_bytes=settings.max_body_bytes,
        timeout=settings.body_timeout_seconds,
    )
    # outermost of the app's middleware, inside app_metrics': its span covers every answer
    tracing.install(app, settings.tracing)
    app.include_router(health.router)
    if settings.serves_api:
        for module in (users, sessions, sms_routes, task_routes, oauth_routes):
            app.include_router(module.router)
    if settings.debug_routes:  # dev only (config.py refuses it elsewhere)
        app.include_router(debug.router)

    metrics = app_metrics.instrument(
        app,
        registry=registry,
        metrics_port=settings.metrics_port,
        metrics_host=settings.host,
        token=settings.metrics_token,
        token_file=settings.metrics_token_file,
        # probes, not API traffic: counted apart, in http_excluded_requests_total
        exclude_paths=[route.path for route in health.router.routes],
        source_timeout=settings.metrics_source_timeout_seconds,
        source_ttl=settings.metrics_source_ttl_seconds,
        sms_providers=[p.name for p in settings.sms_provider_profiles],
        task_types=TASK_KINDS,
        task_queues=settings.task_queue_names,
        oauth_providers=oauth.PROVIDERS,
    )
    db = Database(settings)
    redis = create_redis(settings)
    session_store = SessionStore(redis, settings.session_ttl_seconds)
    verifications = PhoneVerifications(redis, settings)

    async def ping_redis() -> None:
        await redis.ping()

    async def pool_stats() -> app_metrics.PoolStats:
        return db.pool_stats()

    checks = {"timeout": settings.health_timeout_seconds, "ttl": settings.health_interval_seconds}
    metrics.health.add("database", db.ping, **checks)
    metrics.health.add("redis", ping_redis, **checks)
    metrics.database.pool_from(pool_stats)
    sms = SmsService(
        redis,
        settings.sms_provider_profiles,
        metrics,
        settings.queue_max_deliveries,
        keep_delivered=settings.sms_outbox,
    )
    tasks = TaskService(
        redis,
        db,
        sms,
        metrics,
        queues=settings.task_queue_names,
        profiles=settings.task_profile_map,
        timeout=settings.task_timeout_seconds,
        max_deliveries=settings.queue_max_deliveries,
    )
    if settings.serves_api:
        # state read from PostgreSQL and Redis: exported once, by the API (a worker would
        # export the same values again and double every sum)
        metrics.users.active_sessions_from(session_store.count_active)
        metrics.users.registered_users_from(db.count_users)
        metrics.sms.queue_length_from(sms.queue.length)
        metrics.sms.queue_age_from(sms.queue.oldest_age)
        metrics.tasks.queue_lengths_from(tasks.queue_lengths)
        metrics.tasks.queue_ages_from(tasks.queue_ages)
    worker_redis = create_worker_redis(settings)
    handlers = [(sms.queue, sms.deliver, lambda: metrics.sms.dead_letter("bad_entry"))] + [
        (queue, tasks.run, _task_dead_letter(metrics, name)) for name, queue in tasks.queues.items()
    ]
    worker = Worker(
        [
            Loop(
                queue.consumer(worker_redis, settings.queue_dead_consumer_seconds),
                handle,
                settings.queue_block_seconds,
                on_dead_letter,
            )
            for queue, handle, on_dead_letter in handlers
        ],
        worker_redis,
        settings.worker_stop_timeout_seconds,
    )
    # app.state.oauth (for its routes) and (api) scrape-time gauges; the worker's refresh task
    # needs the service too
    tasks.oauth = oauth.install(app, metrics, db, api=settings.serves_api)

    app.state.services = Services(
        settings=settings,
        db=db,
        redis=redis,
        sessions=session_store,
        verifications=verifications,
        send_code=send_code or sms.send_code,
        metrics=metrics,
        sms=sms,
        tasks=tasks,
        worker=worker,
    )
    own = own_addresses() if settings.allow_own_addresses else ()
    _check_host(app, (*settings.allowed_host_names, *own))
    return app


def _task_dead_letter(metrics: app_metrics.Metrics, queue: str) -> Callable[[], None]:
    return lambda: metrics.tasks.dead_letter(queue, "bad_entry")


def _check_host(app: FastAPI, hosts: Sequence[str]) -> None:
    """Answer 400 to a Host header not in ``hosts``, outside everything else (app_metrics'
    ``/metrics`` included, which it serves before the app's own middleware)."""
    build = app.build_middleware_stack  # app_metrics' wrapper of Starlette's

    def build_middleware_stack() -> ASGIApp:
        return TrustedHostMiddleware(build(), allowed_hosts=hosts, www_redirect=False)

    app.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]
