"""The health endpoints' JSON (the details, for the metrics token), the metrics the service
exposes after real traffic, and the service run as ``python -m assistant``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from assistant import Settings
from stack.processes import free_port
from tests.service.backends import Postgres, Redis

from .harness import API, TOKEN, InProcess, metric

pytestmark = [pytest.mark.service, pytest.mark.anyio]

REPO = Path(__file__).resolve().parents[2]
CHECK_KEYS = {"check", "status", "duration_seconds", "checked_at", "error"}
METRICS_TOKEN = "scrape-token"
SCRAPER = {"Authorization": f"Bearer {METRICS_TOKEN}"}  # the health details need it


@pytest.fixture
def settings(fresh_database: Postgres, redis_flushed: Redis) -> Settings:
    return Settings(
        database_url=fresh_database.url,
        redis_url=redis_flushed.url,
        api_token=TOKEN,
        db_pool_size=3,
        db_max_overflow=2,
        metrics_source_ttl_seconds=0,
        health_interval_seconds=0.01,
        metrics_token=METRICS_TOKEN,
    )


async def scrape(service: InProcess) -> str:
    response = await service.client.get("/metrics", headers=SCRAPER)
    response.raise_for_status()
    return response.text


def assert_healthy(result: dict[str, object], check: str) -> None:
    assert set(result) >= CHECK_KEYS
    assert result["check"] == check and result["status"] == "healthy"
    assert result["error"] is None
    assert 0 < result["duration_seconds"] < 2  # type: ignore[operator]
    datetime.fromisoformat(str(result["checked_at"]))


async def test_database_health_runs_a_real_query(service: InProcess) -> None:
    response = await service.client.get("/health/database", headers=SCRAPER)
    assert response.status_code == 200
    body = response.json()
    assert_healthy(body, "database")
    assert body["response_time_seconds"] == body["duration_seconds"]


async def test_without_the_metrics_token_health_tells_the_status_only(
    service: InProcess,
) -> None:
    response = await service.client.get("/health/database")
    assert response.status_code == 200
    assert response.json() == {"check": "database", "status": "healthy"}
    overall = (await service.client.get("/health/overall")).json()
    assert overall["checks"]["redis"] == {"check": "redis", "status": "healthy"}
    for path in ("/health/database/pool", "/health/database/performance", "/health/history"):
        assert (await service.client.get(path)).status_code == 401, path


async def test_pool_reports_capacity_and_checked_out_connections(service: InProcess) -> None:
    engine = service.app.state.services.db.engine
    async with engine.connect() as held:  # one connection checked out of the real pool
        await held.exec_driver_sql("SELECT 1")
        pool = (await service.client.get("/health/database/pool", headers=SCRAPER)).json()
        text = await scrape(service)
    assert pool == {
        "pool_size": 3,
        "max_overflow": 2,
        "capacity": 5,
        "checked_out": 1,
        "idle": pool["idle"],
        "utilization": 0.2,
    }
    assert metric(text, "database_connections_active") == 1
    assert metric(text, "database_connection_pool_size") == 5
    assert metric(text, "database_connection_pool_utilization") == pytest.approx(0.2)
    after = (await service.client.get("/health/database/pool", headers=SCRAPER)).json()
    assert after["checked_out"] == 0 and after["idle"] >= 1


async def test_performance_summarises_recent_database_checks(service: InProcess) -> None:
    for _ in range(3):
        await service.app.state.services.metrics.health.run("database")
    body = (await service.client.get("/health/database/performance", headers=SCRAPER)).json()
    assert body["samples"] in (3, 4) and body["healthy_ratio"] == 1.0  # 4: the 10 ms passed
    times = body["response_time_seconds"]
    assert set(times) == {"last", "mean", "p95", "max"}
    assert 0 < times["last"] <= times["max"] and times["mean"] <= times["max"]
    assert times["last"] == body["latest"]["duration_seconds"]
    assert_healthy(body["latest"], "database")
    assert body["pool"]["capacity"] == 5


async def test_overall_is_healthy_when_every_check_is(service: InProcess) -> None:
    response = await service.client.get("/health/overall", headers=SCRAPER)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert set(body["checks"]) == {"database", "redis"}
    for name, result in body["checks"].items():
        assert_healthy(result, name)


async def test_history_keeps_recent_results_bounded(service: InProcess) -> None:
    health = service.app.state.services.metrics.health
    for _ in range(55):
        await asyncio.gather(health.run("database"), health.run("redis"))
    body = (await service.client.get("/health/history", headers=SCRAPER)).json()
    assert body["max_entries"] == 100 and len(body["results"]) == 100
    stamps = [r["checked_at"] for r in body["results"]]
    assert stamps == sorted(stamps)  # oldest first
    only = await service.client.get("/health/history?check=redis&limit=3", headers=SCRAPER)
    assert [r["check"] for r in only.json()["results"]] == ["redis"] * 3
    bad = await service.client.get("/health/history?limit=0", headers=SCRAPER)
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "limit"


async def test_metrics_reflect_the_traffic(service: InProcess) -> None:
    client = service.client
    for name in ("ann", "bob", "cid"):
        body = {"email": f"{name}@example.com", "name": name, "phone": "+14155550100"}
        assert (await client.post("/users", headers=API, json=body)).status_code == 201
    assert (await client.post("/users", headers=API, json=body)).status_code == 409
    for name in ("ann", "bob"):
        login = await client.post("/sessions", headers=API, json={"email": f"{name}@example.com"})
        assert login.status_code == 201
    token = login.json()["token"]
    assert (await client.post("/users/1/phone/verification", headers=API, json={})).is_success
    confirm = "/users/1/phone/verification/confirm"
    assert (await client.post(confirm, headers=API, json={"code": service.codes[0]})).is_success
    await client.delete("/sessions/current", headers={"Authorization": f"Bearer {token}"})
    assert (await client.get("/health/overall")).status_code == 200

    text = await scrape(service)
    assert metric(text, "user_registrations_total") == 3
    assert metric(text, "registered_users") == 3
    assert metric(text, "active_sessions") == 1
    for status, count in {"sent": 1, "verified": 1, "failed": 0, "expired": 0}.items():
        assert metric(text, "phone_verifications_total", status=status) == count
    assert metric(text, "database_health_status") == 1
    assert 0 < metric(text, "database_response_time_seconds") < 2  # type: ignore[operator]
    assert metric(text, "health_check_status", check="redis") == 1
    assert metric(text, "database_connection_pool_size") == 5
    assert metric(text, "database_connections_active") == 0
    http = {"method": "POST", "endpoint": "/users"}
    assert metric(text, "http_requests_total", status="201", **http) == 3
    assert metric(text, "http_requests_total", status="409", **http) == 1
    # probes are not API traffic: counted apart
    measured = [line for line in text.splitlines() if line.startswith("http_request")]
    assert not [line for line in measured if "/health" in line]
    probes = {"endpoint": "/health/overall", "status": "200"}
    assert metric(text, "http_excluded_requests_total", **probes) == 1


def test_python_m_assistant_serves_from_the_environment(
    fresh_database: Postgres, redis_flushed: Redis, tmp_path: Path
) -> None:
    """The real entry point: settings from ASSISTANT_* variables, uvicorn, a clean stop."""
    port = free_port()
    (tmp_path / "metrics_token").write_text("scrape-token\n")
    env = {
        **os.environ,
        "ASSISTANT_DATABASE_URL": fresh_database.url,
        "ASSISTANT_REDIS_URL": redis_flushed.url,
        "ASSISTANT_API_TOKEN": TOKEN,
        "ASSISTANT_METRICS_TOKEN_FILE": str(tmp_path / "metrics_token"),
        "ASSISTANT_PORT": str(port),
    }
    log_path = tmp_path / "assistant.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "assistant"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            deadline = time.monotonic() + 15
            while not _answers(client, "/health/overall"):
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
            body = {"email": "ann@example.com", "name": "Ann"}
            assert client.post("/users", headers=API, json=body).status_code == 201
            assert client.get("/metrics").status_code == 401
            scrape = client.get("/metrics", headers={"Authorization": "Bearer scrape-token"})
            assert metric(scrape.text, "user_registrations_total") == 1
            assert metric(scrape.text, "registered_users") == 1
            assert _container_healthcheck(env) == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    output = log_path.read_text()
    # uvicorn shuts down cleanly, then re-raises the SIGTERM it caught
    assert proc.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    assert _container_healthcheck(env) == 1  # nothing answers any more


def _container_healthcheck(env: dict[str, str]) -> int:
    """The Dockerfile's HEALTHCHECK command, run against this port."""
    check = [sys.executable, "-m", "assistant.healthcheck"]
    return subprocess.run(check, cwd=REPO, env=env, capture_output=True, timeout=30).returncode


def _answers(client: httpx.Client, path: str) -> bool:
    try:
        return client.get(path).status_code == 200
    except httpx.TransportError:
        return False
