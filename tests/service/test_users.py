"""Users, sessions and phone verification against real PostgreSQL and Redis, in-process."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import asyncpg
import pytest

from assistant import Settings
from tests.service.backends import Postgres

from .harness import API, TOKEN, InProcess, metric, serve

pytestmark = [pytest.mark.service, pytest.mark.anyio]

ALICE = {"email": "Alice@Example.com", "name": "Alice", "phone": "+14155550123"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def register(service: InProcess, **overrides: str) -> dict[str, object]:
    response = await service.client.post("/users", headers=API, json={**ALICE, **overrides})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def login(service: InProcess, email: str = ALICE["email"]) -> str:
    response = await service.client.post("/sessions", headers=API, json={"email": email})
    assert response.status_code == 201, response.text
    return response.json()["token"]  # type: ignore[no-any-return]


async def test_register_stores_a_row_and_counts_it(
    service: InProcess, fresh_database: Postgres
) -> None:
    user = await register(service)
    assert user["email"] == "alice@example.com"  # normalised
    assert user["phone_verified"] is False and user["created_at"]
    conn = await asyncpg.connect(fresh_database.dsn, timeout=5)
    try:
        row = await conn.fetchrow("SELECT email, name, phone FROM users WHERE id = $1", user["id"])
    finally:
        await conn.close()
    assert dict(row) == {"email": "alice@example.com", "name": "Alice", "phone": "+14155550123"}
    read = await service.client.get(f"/users/{user['id']}", headers=API)
    assert read.status_code == 200 and read.json() == user
    text = await service.scrape()
    assert metric(text, "user_registrations_total") == 1
    assert metric(text, "registered_users") == 1


async def test_a_duplicate_email_is_409_whatever_its_case(service: InProcess) -> None:
    await register(service)
    again = await service.client.post(
        "/users", headers=API, json={**ALICE, "email": "ALICE@example.com"}
    )
    assert again.status_code == 409
    assert again.json() == {
        "error": "email_taken",
        "message": "a user with this email already exists",
    }
    assert metric(await service.scrape(), "user_registrations_total") == 1


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"name": "Alice"}, "email", "Field required"),
        ({**ALICE, "email": "alice.example.com"}, "email", "not a valid email address"),
        ({**ALICE, "name": "   "}, "name", "at least 1 character"),
        ({**ALICE, "phone": "0155 5501"}, "phone", "E.164"),
        ({**ALICE, "role": "admin"}, "role", "Extra inputs are not permitted"),
        ({**ALICE, "name": 42}, "name", "valid string"),
        ("not an object", "body", "valid dictionary"),
    ],
)
async def test_an_invalid_payload_is_422_naming_the_field(
    service: InProcess, body: object, field: str, says: str
) -> None:
    response = await service.client.post("/users", headers=API, json=body)
    assert response.status_code == 422
    answer = response.json()
    assert answer["error"] == "invalid_request"
    assert [f["field"] for f in answer["fields"]] == [field]
    assert says in answer["message"] and f"{field}: " in answer["message"]
    assert "admin" not in response.text  # submitted values are not echoed back
    assert metric(await service.scrape(), "registered_users") == 0


async def test_a_body_that_is_not_json_is_422(service: InProcess) -> None:
    response = await service.client.post(
        "/users", headers={**API, "Content-Type": "application/json"}, content=b"{oops"
    )
    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] == "body"


async def test_an_unknown_user_is_404(service: InProcess) -> None:
    client = service.client
    for response in (
        await client.get("/users/424242", headers=API),
        await client.post("/users/424242/phone/verification", headers=API, json={}),
        await client.post(
            "/users/424242/phone/verification/confirm", headers=API, json={"code": "123456"}
        ),
    ):
        assert response.status_code == 404
        assert response.json() == {"error": "user_not_found", "message": "no user with id 424242"}
    unknown = await client.post("/sessions", headers=API, json={"email": "nobody@example.com"})
    assert unknown.status_code == 404 and unknown.json()["error"] == "user_not_found"


@pytest.mark.parametrize("user_id", ["0", "2147483648", "abc"])
async def test_an_impossible_user_id_is_422(service: InProcess, user_id: str) -> None:
    response = await service.client.get(f"/users/{user_id}", headers=API)
    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] == "user_id"


async def test_login_me_and_logout(service: InProcess) -> None:
    user = await register(service)
    token = await login(service, "ALICE@example.com")
    me = await service.client.get("/users/me", headers=bearer(token))
    assert me.status_code == 200 and me.json() == user
    assert metric(await service.scrape(), "active_sessions") == 1

    second = await login(service)
    assert second != token
    assert metric(await service.scrape(), "active_sessions") == 2

    bye = await service.client.delete("/sessions/current", headers=bearer(token))
    assert bye.status_code == 204
    gone = await service.client.get("/users/me", headers=bearer(token))
    assert gone.status_code == 401 and gone.json()["error"] == "unauthorized"
    assert (await service.client.get("/users/me", headers=bearer(second))).status_code == 200
    assert metric(await service.scrape(), "active_sessions") == 1


async def test_a_session_expires_after_its_ttl(settings: Settings) -> None:
    async with serve(dataclasses.replace(settings, session_ttl_seconds=0.5)) as service:
        await register(service)
        token = await login(service)
        assert (await service.client.get("/users/me", headers=bearer(token))).status_code == 200
        deadline = time.monotonic() + 5
        while (await service.client.get("/users/me", headers=bearer(token))).status_code == 200:
            assert time.monotonic() < deadline, "the session outlived its TTL by 4.5 s"
            await asyncio.sleep(0.1)
        response = await service.client.get("/users/me", headers=bearer(token))
        assert response.status_code == 401
        assert "expired" in response.json()["message"]
        assert metric(await service.scrape(), "active_sessions") == 0


async def test_phone_verification_sent_failed_then_verified(
    service: InProcess, fresh_database: Postgres
) -> None:
    user = await register(service)
    base = f"/users/{user['id']}/phone/verification"
    sent = await service.client.post(base, headers=API, json={})  # the phone on file
    assert sent.status_code == 202
    assert sent.json() == {"status": "sent", "expires_in_seconds": 300.0}
    (code,) = service.codes
    wrong = "000000" if code != "000000" else "111111"

    failed = await service.client.post(f"{base}/confirm", headers=API, json={"code": wrong})
    assert failed.status_code == 400
    assert failed.json() == {
        "error": "code_incorrect",
        "message": "the code is incorrect; 4 attempt(s) left",
    }
    verified = await service.client.post(f"{base}/confirm", headers=API, json={"code": code})
    assert verified.status_code == 200, verified.text
    assert verified.json()["phone_verified"] is True
    again = await service.client.post(f"{base}/confirm", headers=API, json={"code": code})
    assert again.status_code == 409 and again.json()["error"] == "no_code_pending"

    conn = await asyncpg.connect(fresh_database.dsn, timeout=5)
    try:
        stored = await conn.fetchval("SELECT phone_verified FROM users WHERE id = $1", user["id"])
    finally:
        await conn.close()
    assert stored is True
    text = await service.scrape()
    counts = {s: metric(text, "phone_verifications_total", status=s) for s in ("sent", "verified")}
    assert counts == {"sent": 1, "verified": 1}
    assert metric(text, "phone_verifications_total", status="failed") == 1
    assert metric(text, "phone_verifications_total", status="expired") == 0


async def test_a_new_phone_is_verified_and_stored(service: InProcess) -> None:
    response = await service.client.post(
        "/users", headers=API, json={"email": "bob@example.com", "name": "Bob"}
    )
    user = response.json()
    assert response.status_code == 201 and user["phone"] is None
    base = f"/users/{user['id']}/phone/verification"
    none_on_file = await service.client.post(base, headers=API, json={})
    assert none_on_file.status_code == 422 and none_on_file.json()["error"] == "phone_missing"
    assert (
        await service.client.post(base, headers=API, json={"phone": "+447700900123"})
    ).is_success
    done = await service.client.post(
        f"{base}/confirm", headers=API, json={"code": service.codes[-1]}
    )
    assert done.status_code == 200
    assert done.json()["phone"] == "+447700900123" and done.json()["phone_verified"] is True


async def test_an_expired_code_is_410_and_counted(settings: Settings) -> None:
    async with serve(dataclasses.replace(settings, verification_code_ttl_seconds=0.3)) as service:
        user = await register(service)
        base = f"/users/{user['id']}/phone/verification"
        assert (await service.client.post(base, headers=API, json={})).status_code == 202
        await asyncio.sleep(0.5)
        late = await service.client.post(
            f"{base}/confirm", headers=API, json={"code": service.codes[-1]}
        )
        assert late.status_code == 410
        assert late.json() == {
            "error": "code_expired",
            "message": "the code has expired: request a new one",
        }
        again = await service.client.post(
            f"{base}/confirm", headers=API, json={"code": service.codes[-1]}
        )
        assert again.status_code == 409  # settled once, counted once
        text = await service.scrape()
        assert metric(text, "phone_verifications_total", status="expired") == 1
        assert metric(text, "phone_verifications_total", status="verified") == 0


async def test_too_many_wrong_codes_discard_the_code(settings: Settings) -> None:
    async with serve(dataclasses.replace(settings, verification_max_attempts=2)) as service:
        user = await register(service)
        base = f"/users/{user['id']}/phone/verification"
        await service.client.post(base, headers=API, json={})
        code = service.codes[-1]
        wrong = {"code": "000000" if code != "000000" else "111111"}
        first = await service.client.post(f"{base}/confirm", headers=API, json=wrong)
        assert first.status_code == 400 and "1 attempt(s) left" in first.json()["message"]
        last = await service.client.post(f"{base}/confirm", headers=API, json=wrong)
        assert last.status_code == 400 and "request a new code in" in last.json()["message"]
        assert 3500 <= int(last.headers["Retry-After"]) <= 3600  # the attempts' window
        right = await service.client.post(f"{base}/confirm", headers=API, json={"code": code})
        assert right.status_code == 429  # the code is gone, and so are the attempts
        assert right.json()["error"] == "too_many_attempts"
        text = await service.scrape()
        assert metric(text, "phone_verifications_total", status="failed") == 2
        assert metric(text, "phone_verification_refusals_total", limit="attempts") == 1


async def test_a_verified_phone_clears_the_wrong_attempts(settings: Settings) -> None:
    async with serve(dataclasses.replace(settings, verification_max_attempts=2)) as service:
        user = await register(service)
        base = f"/users/{user['id']}/phone/verification"
        for _ in range(2):
            await service.client.post(base, headers=API, json={})
            code = service.codes[-1]
            wrong = {"code": "000000" if code != "000000" else "111111"}
            first = await service.client.post(f"{base}/confirm", headers=API, json=wrong)
            assert first.status_code == 400 and "1 attempt(s) left" in first.json()["message"]
            right = await service.client.post(f"{base}/confirm", headers=API, json={"code": code})
            assert right.status_code == 200, right.text


async def test_a_malformed_code_is_422_and_not_an_attempt(service: InProcess) -> None:
    user = await register(service)
    base = f"/users/{user['id']}/phone/verification"
    await service.client.post(base, headers=API, json={})
    response = await service.client.post(f"{base}/confirm", headers=API, json={"code": "12ab"})
    assert response.status_code == 422
    assert "the code has 6 digits" in response.json()["message"]
    assert metric(await service.scrape(), "phone_verifications_total", status="failed") == 0


API_ROUTES = [
    ("POST", "/users"),
    ("GET", "/users/1"),
    ("POST", "/sessions"),
    ("POST", "/users/1/phone/verification"),
    ("POST", "/users/1/phone/verification/confirm"),
]


@pytest.mark.parametrize(
    "headers",
    [{}, bearer("wrong"), {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN}],
    ids=["none", "wrong-token", "basic-scheme", "no-scheme"],
)
async def test_api_routes_need_the_api_token(service: InProcess, headers: dict[str, str]) -> None:
    for method, path in API_ROUTES:
        response = await service.client.request(method, path, headers=headers, json={})
        assert response.status_code == 401, (method, path)  # before the body is validated
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.json()["error"] == "unauthorized"
    for method, path in [("GET", "/users/me"), ("DELETE", "/sessions/current")]:
        response = await service.client.request(method, path, headers=headers)
        assert response.status_code == 401, (method, path)


async def test_session_and_api_tokens_are_not_interchangeable(service: InProcess) -> None:
    await register(service)
    token = await login(service)
    assert (await service.client.get("/users/me", headers=API)).status_code == 401
    assert (await service.client.get("/users/1", headers=bearer(token))).status_code == 401


async def test_metrics_and_health_need_no_api_token(service: InProcess) -> None:
    for path in ["/metrics", "/health/database", "/health/overall"]:
        response = await service.client.get(path)
        assert response.status_code == 200, path
    # the details are for the metrics token, which this service has none of: nobody's
    for path in ["/health/database/pool", "/health/history"]:
        assert (await service.client.get(path, headers=API)).status_code == 401, path


async def test_metrics_may_demand_their_own_token(settings: Settings) -> None:
    async with serve(dataclasses.replace(settings, metrics_token="scrape-token")) as service:
        for headers in ({}, API):
            response = await service.client.get("/metrics", headers=headers)
            assert response.status_code == 401
        response = await service.client.get("/metrics", headers=bearer("scrape-token"))
        assert response.status_code == 200 and "user_registrations_total" in response.text
        assert (await service.client.get("/health/overall")).status_code == 200
