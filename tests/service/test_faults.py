"""PostgreSQL or Redis down (stopped, crashed or hung): clear 503s, a /metrics that still
answers, and recovery without restarting the app once the backend is back."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager

import httpx
import pytest

from assistant import Settings
from tests.service.backends import Backend, Postgres, Redis

from .harness import API, InProcess, metric, serve

pytestmark = [pytest.mark.service, pytest.mark.anyio]

ROUTE_BOUND = 3.0  # seconds a route may take to say "unavailable"
SCRAPE_BOUND = 5.0  # seconds /metrics may take with a backend down


@asynccontextmanager
async def down(backend: Backend, how: str = "stop") -> AsyncIterator[None]:
    """``backend`` stopped (or crashed) for the block, and always started again after it."""
    await asyncio.to_thread(getattr(backend, how))
    try:
        yield
    finally:
        await asyncio.to_thread(backend.start)


async def within(bound: float, call: Awaitable[httpx.Response]) -> httpx.Response:
    start = time.monotonic()
    response = await call
    took = time.monotonic() - start
    assert took < bound, f"{response.request.url.path} took {took:.2f}s"
    return response


def assert_unavailable(response: httpx.Response, dependency: str) -> None:
    assert response.status_code == 503, response.text
    assert response.json() == {
        "error": f"{dependency}_unavailable",
        "message": f"{dependency} is unavailable; try again shortly",
    }
    assert response.headers["Retry-After"] == "5"


async def register(service: InProcess, name: str) -> httpx.Response:
    body = {"email": f"{name}@example.com", "name": name, "phone": "+14155550100"}
    return await service.client.post("/users", headers=API, json=body)


async def login(service: InProcess, name: str) -> httpx.Response:
    return await service.client.post(
        "/sessions", headers=API, json={"email": f"{name}@example.com"}
    )


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_postgres_down_503_then_recovery(
    service: InProcess, postgres: Postgres, how: str
) -> None:
    client = service.client
    assert (await register(service, "ann")).status_code == 201
    session = {"Authorization": f"Bearer {(await login(service, 'ann')).json()['token']}"}

    async with down(postgres, how):
        assert_unavailable(await within(ROUTE_BOUND, register(service, "bob")), "database")
        for call in (
            client.get("/users/1", headers=API),
            login(service, "ann"),
            client.get("/users/me", headers=session),
            client.post("/users/1/phone/verification", headers=API, json={}),
        ):
            assert_unavailable(await within(ROUTE_BOUND, call), "database")
        # Redis alone still serves what needs only Redis
        assert (await client.delete("/sessions/current", headers=session)).status_code == 204

        health = await within(ROUTE_BOUND, client.get("/health/database"))
        assert health.status_code == 503
        assert health.json() == {"check": "database", "status": "unhealthy"}  # no details
        overall = (await client.get("/health/overall")).json()
        assert overall["status"] == "unhealthy"
        assert overall["checks"]["redis"]["status"] == "healthy"

        scrape = await within(SCRAPE_BOUND, client.get("/metrics"))
        assert scrape.status_code == 200
        text = scrape.text
        assert metric(text, "database_health_status") == 0
        assert metric(text, "health_check_status", check="database") == 0
        assert metric(text, "database_response_time_seconds") is None
        assert metric(text, "registered_users") is None  # unknown, so left out
        errors = "app_metrics_scrape_source_errors_total"
        assert metric(text, errors, source="registered_users", reason="error") == 1
        assert metric(text, "health_check_status", check="redis") == 1
        assert metric(text, "database_connection_pool_size") == 10
        assert metric(text, "active_sessions") == 0

    # back without restarting the app
    assert (await register(service, "bob")).status_code == 201
    assert (await login(service, "ann")).status_code == 201
    assert (await client.get("/health/database")).status_code == 200
    text = await service.scrape()
    assert metric(text, "database_health_status") == 1
    assert metric(text, "registered_users") == 2
    assert metric(text, "user_registrations_total") == 2


async def test_the_app_starts_while_postgres_is_down(
    settings: Settings, postgres: Postgres
) -> None:
    async with down(postgres):
        start = time.monotonic()
        async with serve(settings) as service:
            assert time.monotonic() - start < ROUTE_BOUND
            assert (await service.client.get("/health/database")).status_code == 503
            assert_unavailable(await register(service, "ann"), "database")
            scrape = await within(SCRAPE_BOUND, service.client.get("/metrics"))
            assert metric(scrape.text, "database_health_status") == 0

            await asyncio.to_thread(postgres.start)
            created = await register(service, "ann")  # the schema is created on first use
            assert created.status_code == 201, created.text
            user_id = created.json()["id"]
            assert (await service.client.get(f"/users/{user_id}", headers=API)).status_code == 200
            assert metric(await service.scrape(), "database_health_status") == 1


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_redis_down_503_then_recovery(service: InProcess, redis: Redis, how: str) -> None:
    client = service.client
    assert (await register(service, "ann")).status_code == 201
    session = {"Authorization": f"Bearer {(await login(service, 'ann')).json()['token']}"}

    async with down(redis, how):
        confirm = {"code": "123456"}
        for call in (
            login(service, "ann"),
            client.get("/users/me", headers=session),
            client.delete("/sessions/current", headers=session),
            client.post("/users/1/phone/verification", headers=API, json={}),
            client.post("/users/1/phone/verification/confirm", headers=API, json=confirm),
        ):
            assert_unavailable(await within(ROUTE_BOUND, call), "redis")
        # PostgreSQL alone still serves what needs only PostgreSQL
        assert (await register(service, "bob")).status_code == 201
        assert (await client.get("/users/1", headers=API)).status_code == 200

        overall = await within(ROUTE_BOUND, client.get("/health/overall"))
        assert overall.status_code == 503
        assert overall.json()["checks"]["redis"]["status"] == "unhealthy"
        assert overall.json()["checks"]["database"]["status"] == "healthy"

        scrape = await within(SCRAPE_BOUND, client.get("/metrics"))
        assert scrape.status_code == 200
        text = scrape.text
        assert metric(text, "health_check_status", check="redis") == 0
        assert metric(text, "active_sessions") is None
        assert metric(text, "database_health_status") == 1
        assert metric(text, "registered_users") == 2

    # Redis restarts empty: the old session is gone, new ones work
    assert (await client.get("/users/me", headers=session)).status_code == 401
    assert (await login(service, "ann")).status_code == 201
    assert (await client.post("/users/1/phone/verification", headers=API, json={})).is_success
    text = await service.scrape()
    assert metric(text, "health_check_status", check="redis") == 1
    assert metric(text, "active_sessions") == 1


async def test_a_hung_redis_costs_a_bounded_wait(service: InProcess, redis: Redis) -> None:
    assert (await register(service, "ann")).status_code == 201
    assert redis.pid is not None
    os.kill(redis.pid, signal.SIGSTOP)  # accepts connections, never answers
    try:
        assert_unavailable(await within(ROUTE_BOUND, login(service, "ann")), "redis")
        scrape = await within(SCRAPE_BOUND, service.client.get("/metrics"))
        assert scrape.status_code == 200
        assert metric(scrape.text, "health_check_status", check="redis") == 0
        assert metric(scrape.text, "database_health_status") == 1
    finally:
        os.kill(redis.pid, signal.SIGCONT)
    assert (await login(service, "ann")).status_code == 201
