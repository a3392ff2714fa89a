"""SMS through the Redis queue and the delivery loop, against real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from assistant import Settings
from assistant.sms import RECORD_KEY
from tests.service.backends import Postgres, Redis

from .harness import InProcess, metric, serve

pytestmark = [pytest.mark.service, pytest.mark.anyio]

TOKEN = "test-api-token"
API = {"Authorization": f"Bearer {TOKEN}"}
BOTH_WORK = "primary:latency=0.001,failure=0,cost=0.01;backup:latency=0.001,failure=0,cost=0.02"
PRIMARY_FAILS = "primary:latency=0.001,failure=1,cost=0.01;backup:latency=0.001,failure=0,cost=0.02"
ALL_FAIL = "primary:latency=0.001,failure=1,cost=0.01;backup:latency=0.001,failure=1,cost=0.02"
WAIT = 5.0


@pytest.fixture
def settings(fresh_database: Postgres, redis_flushed: Redis) -> Settings:
    return Settings(
        database_url=fresh_database.url,
        redis_url=redis_flushed.url,
        api_token=TOKEN,
        metrics_source_ttl_seconds=0,
        sms_providers=BOTH_WORK,
        queue_block_seconds=0.1,
        queue_dead_consumer_seconds=1.0,
        task_timeout_seconds=0.5,
    )


@asynccontextmanager
async def running(settings: Settings, **overrides: object) -> AsyncIterator[InProcess]:
    async with serve(dataclasses.replace(settings, **overrides)) as service:
        yield service


async def until(check: Callable[[], Awaitable[bool]], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"not true within {timeout} s"
        await asyncio.sleep(0.02)


async def user(service: InProcess, name: str = "ann", phone: str | None = "+14155550100") -> int:
    body = {"email": f"{name}@example.com", "name": name, "phone": phone}
    response = await service.client.post("/users", headers=API, json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]  # type: ignore[no-any-return]


async def send(service: InProcess, user_id: int, body: str = "hello") -> str:
    response = await service.client.post(
        "/sms", headers=API, json={"user_id": user_id, "body": body}
    )
    assert response.status_code == 202, response.text
    return response.json()["id"]  # type: ignore[no-any-return]


async def settled(service: InProcess, sms_id: str) -> dict[str, str]:
    record: dict[str, str] = {}

    async def done() -> bool:
        nonlocal record
        record = (await service.client.get(f"/sms/{sms_id}", headers=API)).json()
        return record.get("status") in ("delivered", "failed")

    await until(done)
    return record


def worker(service: InProcess):  # type: ignore[no-untyped-def]
    return service.app.state.services.worker


async def test_accepted_message_is_delivered_and_measured(settings: Settings) -> None:
    async with running(settings) as service:
        ann = await user(service)
        record = await settled(service, await send(service, ann))
        assert record["status"] == "delivered" and record["provider"] == "primary"
        text = await service.scrape()
        assert metric(text, "sms_messages_total", status="success", provider="primary") == 1
        assert metric(text, "sms_messages_total", status="failure", provider="primary") == 0
        assert metric(text, "sms_messages_total", status="success", provider="backup") == 0
        assert metric(text, "sms_cost_total", provider="primary") == pytest.approx(0.01)
        assert metric(text, "sms_cost_total", provider="backup") == 0
        assert metric(text, "sms_processing_duration_seconds_count", provider="primary") == 1
        assert metric(text, "sms_queue_length") == 0
        counts = await service.client.get(f"/users/{ann}/sms", headers=API)
        assert counts.json() == {"user_id": ann, "accepted": 1, "delivered": 1, "failed": 0}


async def test_failover_to_the_next_provider(settings: Settings) -> None:
    async with running(settings, sms_providers=PRIMARY_FAILS) as service:
        ann = await user(service)
        record = await settled(service, await send(service, ann))
        assert record["status"] == "delivered" and record["provider"] == "backup"
        assert record["tried"] == "primary,backup"
        text = await service.scrape()
        assert metric(text, "sms_messages_total", status="failure", provider="primary") == 1
        assert metric(text, "sms_messages_total", status="success", provider="backup") == 1
        assert metric(text, "sms_cost_total", provider="primary") == 0
        assert metric(text, "sms_cost_total", provider="backup") == pytest.approx(0.02)


async def test_all_providers_failing_is_recorded_as_failed(settings: Settings) -> None:
    async with running(settings, sms_providers=ALL_FAIL) as service:
        ann = await user(service)
        record = await settled(service, await send(service, ann))
        assert record["status"] == "failed" and record["error"] == "all_providers_failed"
        text = await service.scrape()
        assert metric(text, "sms_messages_total", status="failure", provider="primary") == 1
        assert metric(text, "sms_messages_total", status="failure", provider="backup") == 1
        counts = (await service.client.get(f"/users/{ann}/sms", headers=API)).json()
        assert counts == {"user_id": ann, "accepted": 1, "delivered": 0, "failed": 1}


async def test_bad_requests(settings: Settings) -> None:
    async with running(settings) as service:
        client = service.client
        nophone = await user(service, "bob", phone=None)
        ok = {"user_id": 99, "body": "hi"}
        assert (await client.post("/sms", json=ok)).status_code == 401
        assert (await client.post("/sms", headers=API, json=ok)).status_code == 404
        for bad in ({"user_id": 1}, {"user_id": 0, "body": "x"}, {"user_id": 1, "body": " "}):
            assert (await client.post("/sms", headers=API, json=bad)).status_code == 422
        response = await client.post("/sms", headers=API, json={"user_id": nophone, "body": "x"})
        assert response.status_code == 422 and response.json()["error"] == "phone_missing"
        assert (await client.get("/users/99/sms", headers=API)).status_code == 404
        assert (await client.get("/sms/nope", headers=API)).status_code == 404


async def test_queue_length_is_the_real_queue(settings: Settings) -> None:
    async with running(settings) as service:
        ann = await user(service)
        await worker(service).pause("sms")
        ids = [await send(service, ann, f"m{i}") for i in range(3)]
        assert metric(await service.scrape(), "sms_queue_length") == 3
        worker(service).resume("sms")
        for sms_id in ids:
            assert (await settled(service, sms_id))["status"] == "delivered"
        assert metric(await service.scrape(), "sms_queue_length") == 0


async def test_verification_codes_go_out_as_sms(settings: Settings) -> None:
    async with running(settings) as service:
        ann = await user(service)
        sms = service.app.state.services.sms
        await worker(service).pause("sms")
        response = await service.client.post(
            f"/users/{ann}/phone/verification", headers=API, json={}
        )
        assert response.status_code == 202
        [entry] = await sms.redis.lrange(sms.queue.key, 0, -1)
        assert service.codes[-1] in json.loads(entry)["body"]
        assert json.loads(entry)["to"] == "+14155550100"
        worker(service).resume("sms")

        async def sent() -> bool:
            text = await service.scrape()
            return metric(text, "sms_messages_total", status="success", provider="primary") == 1

        await until(sent)
        counts = await service.client.get(f"/users/{ann}/sms", headers=API)
        assert counts.json()["accepted"] == 1  # the code's SMS counts as the user's
        assert json.loads(entry)["user_id"] == ann


async def test_entry_of_a_dead_consumer_is_recovered(settings: Settings) -> None:
    async with running(settings) as service:
        ann = await user(service)
        queue = service.app.state.services.sms.queue
        r = queue.redis
        await worker(service).pause("sms")
        sms_id = await send(service, ann)
        # a consumer took it and died before acknowledging it
        dead = queue.processing_prefix + "dead-consumer"
        assert await r.lmove(queue.key, dead, "RIGHT", "LEFT")
        await r.zadd(queue.consumers_key, {"dead-consumer": time.time()})
        assert await queue.length() == 0
        worker(service).resume("sms")
        record = await settled(service, sms_id)  # after dead_after (1 s) without heartbeat
        assert record["status"] == "delivered" and record["deliveries"] == "1"
        assert not await r.exists(dead)
        assert await r.zscore(queue.consumers_key, "dead-consumer") is None


async def test_redis_down_503_then_the_loop_resumes(settings: Settings, redis: Redis) -> None:
    async with running(settings) as service:
        ann = await user(service)
        r = service.app.state.services.redis
        await worker(service).pause("sms")
        ids = [await send(service, ann, f"m{i}") for i in range(2)]
        # the test server runs without persistence; a production Redis has AOF. SAVE
        # stands in for it, so the accepted messages survive the restart.
        await r.save()
        await asyncio.to_thread(redis.stop)
        try:
            worker(service).resume("sms")  # the loop meets the outage and backs off
            start = time.monotonic()
            response = await service.client.post(
                "/sms", headers=API, json={"user_id": ann, "body": "lost?"}
            )
            assert response.status_code == 503, response.text
            assert response.json()["error"] == "redis_unavailable"
            assert time.monotonic() - start < 3
            start = time.monotonic()
            scrape = await service.client.get("/metrics")
            assert scrape.status_code == 200 and time.monotonic() - start < 5
            await asyncio.sleep(0.5)
        finally:
            await asyncio.to_thread(redis.start)
            (redis.root / "dump.rdb").unlink(missing_ok=True)
        for sms_id in ids:
            assert (await settled(service, sms_id))["status"] == "delivered"
        assert await r.llen(service.app.state.services.sms.queue.key) == 0
        assert await r.hget(RECORD_KEY + ids[0], "status") == "delivered"
