"""OAuth integrations against real PostgreSQL and Redis, with deterministic simulated providers."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from assistant import Settings
from assistant.oauth import PROVIDERS, OAuthSettings
from tests.service.backends import Postgres

from .harness import API, InProcess, metric, serve

pytestmark = [pytest.mark.service, pytest.mark.anyio]

# fast, and failing only where a test says so
RELIABLE = {
    "latency_seconds": 0.001,
    "timeout_seconds": 0.01,
    "connect_failure_rate": 0.0,
    "refresh_failure_rate": 0.0,
    "provider_error_rate": 0.0,
    "timeout_rate": 0.0,
}


def providers_behave(service: InProcess, **rates: float) -> None:
    """Swap the simulated providers' behaviour of a running app."""
    service.app.state.oauth.providers.settings = OAuthSettings.uniform(**{**RELIABLE, **rates})


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[InProcess]:
    async with serve(settings) as running:
        providers_behave(running)
        yield running


async def register(service: InProcess, name: str = "ann") -> int:
    body = {"email": f"{name}@example.com", "name": name}
    response = await service.client.post("/users", headers=API, json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]  # type: ignore[no-any-return]


async def connect(service: InProcess, user_id: int, provider: str, **body: Any) -> httpx.Response:
    return await service.client.post(
        f"/users/{user_id}/integrations", headers=API, json={"provider": provider, **body}
    )


async def rows(db: Postgres, user_id: int) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(db.dsn, timeout=5)
    try:
        found = await conn.fetch(
            "SELECT * FROM oauth_integrations WHERE user_id = $1 ORDER BY id", user_id
        )
    finally:
        await conn.close()
    return [dict(row) for row in found]


def durations(text: str, provider: str, operation: str) -> float | None:
    return metric(
        text, "oauth_operation_duration_seconds_count", provider=provider, operation=operation
    )


async def test_connect_refresh_revoke(service: InProcess, fresh_database: Postgres) -> None:
    client = service.client
    user = await register(service)
    connected = await connect(service, user, "google", scopes=["openid", "email", "openid"])
    assert connected.status_code == 201, connected.text
    body = connected.json()
    assert body["provider"] == "google" and body["status"] == "active"
    assert body["scopes"] == ["openid", "email"] and body["refresh_count"] == 0
    assert body["access_token_expires_at"] and body["connected_at"]
    assert 'token"' not in connected.text and "sha256" not in connected.text
    [row] = await rows(fresh_database, user)
    assert row["status"] == "active" and row["scopes"] == ["openid", "email"]
    assert len(row["access_token_sha256"]) == 64 and len(row["refresh_token_sha256"]) == 64
    assert row["refresh_count"] == 0 and row["revoked_at"] is None

    refreshed = await client.post(f"/users/{user}/integrations/google/refresh", headers=API)
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["refresh_count"] == 1 and refreshed.json()["refreshed_at"]
    [after] = await rows(fresh_database, user)
    assert after["refresh_count"] == 1
    assert after["access_token_sha256"] != row["access_token_sha256"]
    assert after["access_token_expires_at"] > row["access_token_expires_at"]

    # default scopes when none are given
    microsoft = await connect(service, user, "microsoft")
    assert microsoft.status_code == 201 and "offline_access" in microsoft.json()["scopes"]

    revoked = await client.delete(f"/users/{user}/integrations/google", headers=API)
    assert revoked.status_code == 204 and revoked.content == b""
    google, _ = await rows(fresh_database, user)
    assert google["status"] == "revoked" and google["revoked_at"] is not None
    assert google["access_token_sha256"] is None and google["refresh_token_sha256"] is None

    listed = await client.get(f"/users/{user}/integrations", headers=API)
    assert listed.status_code == 200
    assert [(i["provider"], i["status"]) for i in listed.json()] == [
        ("google", "revoked"),
        ("microsoft", "active"),
    ]

    text = await service.scrape()
    assert metric(text, "oauth_token_refresh_total", provider="google", status="success") == 1
    assert metric(text, "oauth_token_refresh_total", provider="google", status="failure") == 0
    assert durations(text, "google", "connect") == 1
    assert durations(text, "google", "refresh") == 1
    assert durations(text, "google", "revoke") == 1
    assert durations(text, "microsoft", "connect") == 1
    assert "oauth_errors_total{" not in text
    assert metric(text, "oauth_integrations_active", provider="google") == 0
    assert metric(text, "oauth_integrations_active", provider="microsoft") == 1
    assert metric(text, "oauth_connected_users") == 1


async def test_a_second_active_integration_is_409_until_revoked(
    service: InProcess, fresh_database: Postgres
) -> None:
    user = await register(service)
    assert (await connect(service, user, "github")).status_code == 201
    again = await connect(service, user, "github")
    assert again.status_code == 409
    assert again.json() == {
        "error": "integration_exists",
        "message": f"user {user} already has an active github integration: revoke it first",
    }
    revoked = await service.client.delete(f"/users/{user}/integrations/github", headers=API)
    assert revoked.status_code == 204
    assert (await connect(service, user, "github")).status_code == 201
    assert [r["status"] for r in await rows(fresh_database, user)] == ["revoked", "active"]
    # a 409 is not a provider call
    assert durations(await service.scrape(), "github", "connect") == 2


async def test_concurrent_connects_make_one_integration(
    service: InProcess, fresh_database: Postgres
) -> None:
    user = await register(service)
    providers_behave(service, latency_seconds=0.05)  # both pass the check before either inserts
    answers = await asyncio.gather(*(connect(service, user, "google") for _ in range(2)))
    assert sorted(a.status_code for a in answers) == [201, 409]
    assert len(await rows(fresh_database, user)) == 1


async def test_unknown_users_and_integrations_are_404(service: InProcess) -> None:
    client = service.client
    for response in (
        await connect(service, 424242, "google"),
        await client.get("/users/424242/integrations", headers=API),
        await client.post("/users/424242/integrations/google/refresh", headers=API),
        await client.delete("/users/424242/integrations/google", headers=API),
    ):
        assert response.status_code == 404
        assert response.json() == {"error": "user_not_found", "message": "no user with id 424242"}
    user = await register(service)
    for response in (
        await client.post(f"/users/{user}/integrations/google/refresh", headers=API),
        await client.delete(f"/users/{user}/integrations/google", headers=API),
    ):
        assert response.status_code == 404
        assert response.json() == {
            "error": "integration_not_found",
            "message": f"user {user} has no active google integration",
        }
    assert (await client.get(f"/users/{user}/integrations", headers=API)).json() == []
    assert "oauth_operation_duration_seconds_count{" not in await service.scrape()


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"provider": "myspace"}, "provider", "'google', 'microsoft' or 'github'"),
        ({}, "provider", "Field required"),
        ({"provider": "google", "scopes": ["read write"]}, "scopes.0", "no spaces"),
        ({"provider": "google", "scopes": []}, "scopes", "at least 1 item"),
        ({"provider": "google", "scopes": "openid"}, "scopes", "valid list"),
        ({"provider": "google", "token": "x"}, "token", "Extra inputs are not permitted"),
    ],
)
async def test_an_invalid_connect_is_422(
    service: InProcess, body: dict[str, Any], field: str, says: str
) -> None:
    user = await register(service)
    response = await service.client.post(f"/users/{user}/integrations", headers=API, json=body)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["error"] == "invalid_request"
    assert [f["field"] for f in answer["fields"]] == [field]
    assert says in answer["message"]


async def test_an_unknown_provider_in_the_path_is_422(service: InProcess) -> None:
    user = await register(service)
    for response in (
        await service.client.post(f"/users/{user}/integrations/myspace/refresh", headers=API),
        await service.client.delete(f"/users/{user}/integrations/myspace", headers=API),
    ):
        assert response.status_code == 422
        assert response.json()["fields"][0]["field"] == "provider"


async def test_the_routes_need_the_api_token(service: InProcess) -> None:
    client = service.client
    for response in (
        await client.post("/users/1/integrations", json={"provider": "nope"}),
        await client.get("/users/1/integrations", headers={"Authorization": "Bearer wrong"}),
        await client.post("/users/1/integrations/google/refresh"),
        await client.delete("/users/1/integrations/google"),
    ):
        assert response.status_code == 401 and response.json()["error"] == "unauthorized"


async def test_a_failed_refresh_is_502_and_counted(
    service: InProcess, fresh_database: Postgres
) -> None:
    user = await register(service)
    assert (await connect(service, user, "microsoft")).status_code == 201
    providers_behave(service, refresh_failure_rate=1)
    failed = await service.client.post(f"/users/{user}/integrations/microsoft/refresh", headers=API)
    assert failed.status_code == 502
    assert failed.json() == {
        "error": "invalid_grant",
        "message": "microsoft rejected the refresh token: reconnect the integration; "
        "nothing was changed",
    }
    [row] = await rows(fresh_database, user)
    assert row["refresh_count"] == 0 and row["status"] == "active"

    providers_behave(service, timeout_rate=1)
    timed_out = await service.client.post(
        f"/users/{user}/integrations/microsoft/refresh", headers=API
    )
    assert timed_out.status_code == 502 and timed_out.json()["error"] == "timeout"

    text = await service.scrape()
    refreshes = "oauth_token_refresh_total"
    assert metric(text, refreshes, provider="microsoft", status="failure") == 2
    assert metric(text, refreshes, provider="microsoft", status="success") == 0
    errors = "oauth_errors_total"
    assert metric(text, errors, provider="microsoft", error_type="invalid_grant") == 1
    assert metric(text, errors, provider="microsoft", error_type="timeout") == 1
    assert durations(text, "microsoft", "refresh") == 2  # failed calls are timed too


async def test_a_refused_connect_is_502_and_stores_nothing(
    service: InProcess, fresh_database: Postgres
) -> None:
    user = await register(service)
    providers_behave(service, connect_failure_rate=1)
    refused = await connect(service, user, "google")
    assert refused.status_code == 502 and refused.json()["error"] == "access_denied"
    providers_behave(service, provider_error_rate=1)
    broken = await connect(service, user, "github")
    assert broken.status_code == 502 and broken.json()["error"] == "provider_error"
    assert await rows(fresh_database, user) == []
    text = await service.scrape()
    errors = "oauth_errors_total"
    assert metric(text, errors, provider="google", error_type="access_denied") == 1
    assert metric(text, errors, provider="github", error_type="provider_error") == 1
    assert durations(text, "google", "connect") == 1
    assert metric(text, "oauth_integrations_active", provider="google") == 0


async def test_revoke_succeeds_locally_when_the_provider_fails(
    service: InProcess, fresh_database: Postgres
) -> None:
    user = await register(service)
    assert (await connect(service, user, "google")).status_code == 201
    providers_behave(service, provider_error_rate=1)
    revoked = await service.client.delete(f"/users/{user}/integrations/google", headers=API)
    assert revoked.status_code == 204
    [row] = await rows(fresh_database, user)
    assert row["status"] == "revoked" and row["access_token_sha256"] is None
    text = await service.scrape()
    assert metric(text, "oauth_errors_total", provider="google", error_type="provider_error") == 1
    assert durations(text, "google", "revoke") == 1


async def test_the_gauges_come_from_the_database(
    service: InProcess, fresh_database: Postgres
) -> None:
    text = await service.scrape()
    for provider in PROVIDERS:  # zero series from the start
        assert metric(text, "oauth_integrations_active", provider=provider) == 0
    assert metric(text, "oauth_connected_users") == 0

    ann, bob = await register(service, "ann"), await register(service, "bob")
    for user, provider in ((ann, "google"), (ann, "github"), (bob, "google")):
        assert (await connect(service, user, provider)).status_code == 201
    # a row written by someone else is counted too: the database is the source
    conn = await asyncpg.connect(fresh_database.dsn, timeout=5)
    try:
        carl = await conn.fetchval(
            "INSERT INTO users (email, name, phone_verified) VALUES ('c@example.com', 'c', false)"
            " RETURNING id"
        )
        await conn.execute(
            "INSERT INTO oauth_integrations (user_id, provider, status, scopes, refresh_count)"
            " VALUES ($1, 'microsoft', 'active', '{}', 0), ($1, 'github', 'revoked', '{}', 0)",
            carl,
        )
    finally:
        await conn.close()

    text = await service.scrape()
    active = "oauth_integrations_active"
    assert metric(text, active, provider="google") == 2
    assert metric(text, active, provider="github") == 1
    assert metric(text, active, provider="microsoft") == 1
    assert metric(text, "oauth_connected_users") == 3
    labels = {"provider", "status", "error_type", "operation", "le"}  # never a user or token
    oauth = [f for f in text_string_to_metric_families(text) if f.name.startswith("oauth_")]
    assert all(set(s.labels) <= labels for f in oauth for s in f.samples)


async def test_the_gauges_are_cached_for_the_source_ttl(settings: Settings) -> None:
    ttl = 1.0
    async with serve(dataclasses.replace(settings, metrics_source_ttl_seconds=ttl)) as service:
        providers_behave(service)
        active = "oauth_integrations_active"
        scraped_at = time.monotonic()  # the cached value is at most this old
        assert metric(await service.scrape(), active, provider="github") == 0
        user = await register(service)
        assert (await connect(service, user, "github")).status_code == 201
        text = await service.scrape()
        if time.monotonic() - scraped_at < ttl:  # still within the TTL: the cached value
            assert metric(text, active, provider="github") == 0
            assert metric(text, "oauth_connected_users") == 0
        deadline = time.monotonic() + 5
        while metric(text, active, provider="github") != 1:
            assert time.monotonic() < deadline, "the new integration never showed"
            await asyncio.sleep(0.1)
            text = await service.scrape()
        assert metric(text, "oauth_connected_users") == 1


async def test_postgres_down_503_then_recovery(service: InProcess, postgres: Postgres) -> None:
    client = service.client
    user = await register(service)
    assert (await connect(service, user, "google")).status_code == 201

    await asyncio.to_thread(postgres.stop)
    try:
        for call in (
            connect(service, user, "github"),
            client.get(f"/users/{user}/integrations", headers=API),
            client.post(f"/users/{user}/integrations/google/refresh", headers=API),
            client.delete(f"/users/{user}/integrations/google", headers=API),
        ):
            start = time.monotonic()
            response = await call
            assert time.monotonic() - start < 3.0
            assert response.status_code == 503, response.text
            assert response.json() == {
                "error": "database_unavailable",
                "message": "database is unavailable; try again shortly",
            }
            assert response.headers["Retry-After"] == "5"
        start = time.monotonic()
        scrape = await client.get("/metrics")
        assert time.monotonic() - start < 5.0
        assert scrape.status_code == 200
        assert metric(scrape.text, "oauth_integrations_active", provider="google") is None
        assert metric(scrape.text, "oauth_connected_users") is None
        errors = "app_metrics_scrape_source_errors_total"
        assert metric(scrape.text, errors, source="oauth_integrations", reason="error") == 1
        assert metric(scrape.text, errors, source="oauth_users", reason="error") == 1
        # nothing reached a provider
        assert durations(scrape.text, "github", "connect") is None
        assert durations(scrape.text, "google", "refresh") is None
    finally:
        await asyncio.to_thread(postgres.start)

    # back without restarting the app
    refreshed = await client.post(f"/users/{user}/integrations/google/refresh", headers=API)
    assert refreshed.status_code == 200, refreshed.text
    assert (await connect(service, user, "github")).status_code == 201
    text = await service.scrape()
    assert metric(text, "oauth_integrations_active", provider="google") == 1
    assert metric(text, "oauth_integrations_active", provider="github") == 1
    assert metric(text, "oauth_connected_users") == 1


def test_settings_from_the_environment() -> None:
    settings = OAuthSettings.from_env(
        {
            "ASSISTANT_OAUTH_LATENCY_SECONDS": "0.5",
            "ASSISTANT_OAUTH_GOOGLE_LATENCY_SECONDS": "0.25",
            "ASSISTANT_OAUTH_GITHUB_REFRESH_FAILURE_RATE": " 1 ",
        }
    )
    assert settings.profiles["google"].latency_seconds == 0.25
    assert settings.profiles["microsoft"].latency_seconds == 0.5
    assert settings.profiles["github"].refresh_failure_rate == 1.0
    assert OAuthSettings.from_env({}) == OAuthSettings()
    with pytest.raises(ValueError, match="ASSISTANT_OAUTH_TIMEOUT_RATE='often'"):
        OAuthSettings.from_env({"ASSISTANT_OAUTH_TIMEOUT_RATE": "often"})
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        OAuthSettings.from_env({"ASSISTANT_OAUTH_MICROSOFT_CONNECT_FAILURE_RATE": "2"})
