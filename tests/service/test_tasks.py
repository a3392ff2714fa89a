"""Background tasks through the Redis queues and the delivery loops: real outcomes."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest

from assistant import Settings
from assistant.sessions import EXPIRY_INDEX
from assistant.tasks import RECORD_KEY
from tests.service.backends import Postgres, Redis

from .harness import API, InProcess, metric, running, settings_for
from .test_sms import BOTH_WORK, until, user

pytestmark = [pytest.mark.service, pytest.mark.anyio]

QUICK = "send_reminder:latency=0;refresh_tokens:latency=0,failure=0;cleanup_sessions:latency=0"


@pytest.fixture
def settings(fresh_database: Postgres, redis_flushed: Redis) -> Settings:
    return settings_for(
        fresh_database.url,
        redis_flushed.url,
        sms_providers=BOTH_WORK,
        task_profiles=QUICK,
        queue_block_seconds=0.1,
        queue_dead_consumer_seconds=1.0,
        task_timeout_seconds=0.3,
    )


async def submit(service: InProcess, **body: object) -> dict[str, str]:
    response = await service.client.post("/tasks", headers=API, json=body)
    assert response.status_code == 202, response.text
    return response.json()  # type: ignore[no-any-return]


async def finished(service: InProcess, task_id: str) -> dict[str, str]:
    record: dict[str, str] = {}

    async def done() -> bool:
        nonlocal record
        record = (await service.client.get(f"/tasks/{task_id}", headers=API)).json()
        return record.get("status") in ("success", "failure", "timeout")

    await until(done)
    return record


def executions(text: str, kind: str, outcome: str) -> float | None:
    return metric(text, "task_executions_total", task_type=kind, outcome=outcome)


async def test_cleanup_sessions_does_real_work(settings: Settings) -> None:
    async with running(settings) as service:
        r = service.app.state.services.redis
        await r.zadd(EXPIRY_INDEX, {"old1": 1.0, "old2": 2.0, "live": time.time() + 3600})
        accepted = await submit(service, type="cleanup_sessions")
        assert accepted["queue"] == "maintenance"
        record = await finished(service, accepted["id"])
        assert record["status"] == "success" and '"removed": 2' in record["result"]
        assert await r.zrange(EXPIRY_INDEX, 0, -1) == ["live"]
        text = await service.scrape()
        assert executions(text, "cleanup_sessions", "success") == 1
        count = "task_execution_duration_seconds_count"
        assert metric(text, count, task_type="cleanup_sessions") == 1


async def test_failure_and_timeout_outcomes(settings: Settings) -> None:
    profiles = "refresh_tokens:latency=0,failure=1;send_reminder:latency=2"
    async with running(settings, task_profiles=profiles) as service:
        failed = await finished(service, (await submit(service, type="refresh_tokens"))["id"])
        assert failed["status"] == "failure" and "simulated" in failed["error"]
        slow = await submit(service, type="send_reminder", user_id=1)
        timed_out = await finished(service, slow["id"])
        assert timed_out["status"] == "timeout"
        assert 0.25 < float(timed_out["duration_seconds"]) < 1.5
        text = await service.scrape()
        assert executions(text, "refresh_tokens", "failure") == 1
        assert executions(text, "send_reminder", "timeout") == 1
        assert executions(text, "send_reminder", "success") == 0


async def test_send_reminder_sends_an_sms_or_fails_for_real(settings: Settings) -> None:
    async with running(settings) as service:
        ann = await user(service)
        done = await finished(
            service, (await submit(service, type="send_reminder", user_id=ann))["id"]
        )
        assert done["status"] == "success"
        missing = await submit(service, type="send_reminder", user_id=999)
        failed = await finished(service, missing["id"])
        assert failed["status"] == "failure" and "no user with id 999" in failed["error"]

        async def delivered() -> bool:
            counts = (await service.client.get(f"/users/{ann}/sms", headers=API)).json()
            return counts["delivered"] == 1  # type: ignore[no-any-return]

        await until(delivered)
        text = await service.scrape()
        assert executions(text, "send_reminder", "success") == 1
        assert executions(text, "send_reminder", "failure") == 1


async def test_queue_lengths_per_queue(settings: Settings) -> None:
    async with running(settings) as service:
        worker = service.app.state.services.worker
        await worker.pause()
        ids = [(await submit(service, type="refresh_tokens"))["id"] for _ in range(2)]
        ids.append((await submit(service, type="cleanup_sessions"))["id"])
        text = await service.scrape()
        assert metric(text, "task_queue_length", queue="default") == 2
        assert metric(text, "task_queue_length", queue="maintenance") == 1
        worker.resume()
        for task_id in ids:
            assert (await finished(service, task_id))["status"] == "success"
        text = await service.scrape()
        assert metric(text, "task_queue_length", queue="default") == 0


async def test_queue_ages_per_queue(settings: Settings) -> None:
    async with running(settings) as service:
        worker = service.app.state.services.worker
        await worker.pause()
        task_id = (await submit(service, type="refresh_tokens"))["id"]
        await asyncio.sleep(1.0)
        text = await service.scrape()
        age = metric(text, "task_queue_oldest_age_seconds", queue="default")
        assert age is not None and 1.0 <= age < 5.0
        assert metric(text, "task_queue_oldest_age_seconds", queue="maintenance") == 0
        worker.resume()
        assert (await finished(service, task_id))["status"] == "success"
        text = await service.scrape()
        assert metric(text, "task_queue_oldest_age_seconds", queue="default") == 0


async def test_bad_task_requests(settings: Settings) -> None:
    async with running(settings) as service:
        client = service.client
        assert (await client.post("/tasks", json={"type": "refresh_tokens"})).status_code == 401
        for bad in ({"type": "mine_bitcoin"}, {"type": "refresh_tokens", "queue": "nope"}, {}):
            assert (await client.post("/tasks", headers=API, json=bad)).status_code == 422
        assert (await client.get("/tasks/nope", headers=API)).status_code == 404


async def test_exhausted_task_is_a_failure_without_a_duration(settings: Settings) -> None:
    async with running(settings) as service:
        services = service.app.state.services
        await services.worker.pause()
        accepted = await submit(service, type="refresh_tokens")
        key = RECORD_KEY + accepted["id"]
        await services.redis.hset(key, "deliveries", settings.queue_max_deliveries)
        services.worker.resume()
        record = await finished(service, accepted["id"])
        assert record["status"] == "failure" and record["error"] == "retries_exhausted"
        assert "duration_seconds" not in record
        text = await service.scrape()
        assert executions(text, "refresh_tokens", "failure") == 1
        count = "task_execution_duration_seconds_count"
        assert metric(text, count, task_type="refresh_tokens") == 0
        dead = "task_dead_letters_total"
        assert metric(text, dead, queue="default", reason="retries_exhausted") == 1


async def test_unknown_task_type_is_dead_lettered(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="assistant")
    async with running(settings) as service:
        services = service.app.state.services
        queue = services.tasks.queues["default"]
        await services.worker.pause()
        bad = json.dumps({"id": "x1", "type": "mine_bitcoin", "queue": "default", "params": {}})
        await queue.redis.lpush(queue.key, bad)
        accepted = await submit(service, type="refresh_tokens")
        services.worker.resume()
        assert (await finished(service, accepted["id"]))["status"] == "success"
        assert await queue.redis.lrange(queue.dead_key, 0, -1) == [bad]
        text = await service.scrape()
        assert metric(text, "task_dead_letters_total", queue="default", reason="bad_entry") == 1
        lines = [m for m in caplog.messages if "queue tasks:default" in m]
        assert len(lines) == 1 and "mine_bitcoin" in lines[0], lines


async def test_unconfigured_task_queue_is_reported(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="assistant")
    async with running(settings) as service:
        r = service.app.state.services.redis
        await r.lpush("assistant:queue:tasks:retired", "a", "b")
    async with running(settings):

        async def reported() -> bool:
            return any("tasks:retired is not configured; 2" in m for m in caplog.messages)

        await until(reported)
    assert not any("tasks:default" in m for m in caplog.messages)


async def test_refresh_tokens_refreshes_the_users_integrations_through_oauth(
    settings: Settings,
) -> None:
    from assistant.oauth import OAuthSettings

    from .test_oauth import RELIABLE

    async with running(settings, task_profiles=QUICK) as service:
        service.app.state.oauth.providers.settings = OAuthSettings.uniform(**RELIABLE)
        body = {"email": "ann@example.com", "name": "Ann"}
        user = (await service.client.post("/users", headers=API, json=body)).json()["id"]
        for provider in ("google", "github"):
            connect = {"provider": provider}
            url = f"/users/{user}/integrations"
            assert (await service.client.post(url, headers=API, json=connect)).status_code == 201
        record = await finished(service, (await submit(service, type="refresh_tokens",
                                                       user_id=user))["id"])  # fmt: skip
        assert record["status"] == "success", record
        text = await service.scrape()
        for provider in ("google", "github"):
            refreshed = metric(text, "oauth_token_refresh_total", provider=provider,
                               status="success")  # fmt: skip
            assert refreshed == 1, provider
        listed = (await service.client.get(f"/users/{user}/integrations", headers=API)).json()
        assert sorted(i["refresh_count"] for i in listed) == [1, 1]
