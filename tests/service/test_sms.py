"""SMS through the Redis queue and the delivery loop, against real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable

import pytest

from assistant import Settings
from assistant.sms import RECORD_KEY, Provider
from tests.service.backends import Postgres, Redis

from .harness import API, InProcess, metric, running, settings_for

pytestmark = [pytest.mark.service, pytest.mark.anyio]

BOTH_WORK = "primary:latency=0.001,failure=0,cost=0.01;backup:latency=0.001,failure=0,cost=0.02"
PRIMARY_FAILS = "primary:latency=0.001,failure=1,cost=0.01;backup:latency=0.001,failure=0,cost=0.02"
ALL_FAIL = "primary:latency=0.001,failure=1,cost=0.01;backup:latency=0.001,failure=1,cost=0.02"
WAIT = 5.0


@pytest.fixture
def settings(fresh_database: Postgres, redis_flushed: Redis) -> Settings:
    return settings_for(
        fresh_database.url,
        redis_flushed.url,
        sms_providers=BOTH_WORK,
        queue_block_seconds=0.1,
        queue_dead_consumer_seconds=1.0,
        task_timeout_seconds=0.5,
    )


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


async def send_sms(service: InProcess, user_id: int, body: str = "hello") -> str:
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
        record = await settled(service, await send_sms(service, ann))
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
        record = await settled(service, await send_sms(service, ann))
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
        record = await settled(service, await send_sms(service, ann))
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
        ids = [await send_sms(service, ann, f"m{i}") for i in range(3)]
        assert metric(await service.scrape(), "sms_queue_length") == 3
        worker(service).resume("sms")
        for sms_id in ids:
            assert (await settled(service, sms_id))["status"] == "delivered"
        assert metric(await service.scrape(), "sms_queue_length") == 0


async def test_queue_age_is_the_wait_of_the_message_taken_next(settings: Settings) -> None:
    async with running(settings) as service:
        ann = await user(service)
        await worker(service).pause("sms")
        assert metric(await service.scrape(), "sms_queue_oldest_age_seconds") == 0
        first = await send_sms(service, ann, "first")
        await asyncio.sleep(1.0)
        second = await send_sms(service, ann, "second")
        age = metric(await service.scrape(), "sms_queue_oldest_age_seconds")
        assert age is not None and 1.0 <= age < 5.0  # the first one's wait, not the second's
        worker(service).resume("sms")
        for sms_id in (first, second):
            assert (await settled(service, sms_id))["status"] == "delivered"
        assert metric(await service.scrape(), "sms_queue_oldest_age_seconds") == 0


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
        sms_id = await send_sms(service, ann)
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
        ids = [await send_sms(service, ann, f"m{i}") for i in range(2)]
        # the test server runs without persistence; a production Redis has AOF. SAVE
        # stands in for it (as the tests' admin: the app's user may not), so the accepted
        # messages survive the restart.
        assert await asyncio.to_thread(redis.command, b"SAVE") == b"+OK"
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


def total(texts: list[str], name: str, **labels: str) -> float:
    return sum(metric(text, name, **labels) or 0.0 for text in texts)


async def test_slow_delivery_with_two_processes_is_counted_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    send = Provider.send
    calls = 0

    async def first_call_slow(self: Provider, to: str, body: str) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(1.5)  # longer than dead_after (1 s): the provider stalls
        await send(self, to, body)

    monkeypatch.setattr(Provider, "send", first_call_slow)
    async with running(settings) as one, running(settings) as two:
        ann = await user(one)
        sms_id = await send_sms(one, ann)
        record = await settled(one, sms_id)
        await asyncio.sleep(1.5)  # a second delivery, if any, settles meanwhile
        record = (await one.client.get(f"/sms/{sms_id}", headers=API)).json()
        assert record["status"] == "delivered"
        counts = (await one.client.get(f"/users/{ann}/sms", headers=API)).json()
        assert counts == {"user_id": ann, "accepted": 1, "delivered": 1, "failed": 0}
        texts = [await one.scrape(), await two.scrape()]
        assert total(texts, "sms_messages_total", status="success", provider="primary") == 1
        assert total(texts, "sms_cost_total", provider="primary") == pytest.approx(0.01)
        count = "sms_processing_duration_seconds_count"
        assert total(texts, count, provider="primary") == 1


async def test_concurrent_deliveries_settle_once(settings: Settings) -> None:
    slow = "primary:latency=0.05,failure=0,cost=0.01"
    async with running(settings, sms_providers=slow) as service:
        ann = await user(service)
        sms = service.app.state.services.sms
        await worker(service).pause("sms")
        await send_sms(service, ann)
        [entry] = await sms.redis.lrange(sms.queue.key, 0, -1)
        await asyncio.gather(sms.deliver(entry), sms.deliver(entry))
        counts = (await service.client.get(f"/users/{ann}/sms", headers=API)).json()
        assert counts["delivered"] == 1
        text = await service.scrape()
        assert metric(text, "sms_messages_total", status="success", provider="primary") == 1
        assert metric(text, "sms_cost_total", provider="primary") == pytest.approx(0.01)


async def test_malformed_entries_are_dead_lettered(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="assistant")
    async with running(settings) as service:
        ann = await user(service)
        queue = service.app.state.services.sms.queue
        await worker(service).pause("sms")
        bad = ["not json", json.dumps({"to": "+1", "body": "no id"}), "[1]"]
        for entry in bad:
            await queue.redis.lpush(queue.key, entry)
        sms_id = await send_sms(service, ann)
        worker(service).resume("sms")
        start = time.monotonic()
        assert (await settled(service, sms_id))["status"] == "delivered"
        assert time.monotonic() - start < 1.0
        assert await queue.redis.lrange(queue.dead_key, 0, -1) == bad[::-1]
        assert await queue.length() == 0
        text = await service.scrape()
        assert metric(text, "sms_dead_letters_total", reason="bad_entry") == len(bad)
        assert metric(text, "sms_dead_letters_total", reason="retries_exhausted") == 0
        lines = [r for r in caplog.records if "queue sms" in r.getMessage()]
        assert len(lines) == len(bad), [r.getMessage() for r in lines]


async def test_exhausted_messages_are_counted_as_failures(settings: Settings) -> None:
    async with running(settings) as service:
        ann = await user(service)
        r = service.app.state.services.redis
        await worker(service).pause("sms")
        first, second = await send_sms(service, ann, "a"), await send_sms(service, ann, "b")
        await r.hset(RECORD_KEY + first, "deliveries", settings.queue_max_deliveries)
        await r.hset(RECORD_KEY + second, mapping={"deliveries": 3, "trying": "backup"})
        worker(service).resume("sms")
        for sms_id in (first, second):
            record = await settled(service, sms_id)
            assert record["status"] == "failed" and record["error"] == "retries_exhausted"
        text = await service.scrape()
        assert metric(text, "sms_messages_total", status="failure", provider="primary") == 1
        assert metric(text, "sms_messages_total", status="failure", provider="backup") == 1
        assert metric(text, "sms_processing_duration_seconds_count", provider="primary") == 0
        assert metric(text, "sms_cost_total", provider="primary") == 0
        assert metric(text, "sms_dead_letters_total", reason="retries_exhausted") == 2
        counts = (await service.client.get(f"/users/{ann}/sms", headers=API)).json()
        assert counts == {"user_id": ann, "accepted": 2, "delivered": 0, "failed": 2}


async def test_an_expired_record_is_not_recreated(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="assistant")
    async with running(settings) as service:
        ann = await user(service)
        r = service.app.state.services.redis
        await worker(service).pause("sms")
        sms_id = await send_sms(service, ann)
        await r.delete(RECORD_KEY + sms_id)  # its TTL passed while it waited
        worker(service).resume("sms")

        async def dropped() -> bool:
            return any("record expired" in m for m in caplog.messages)

        await until(dropped)
        assert not await r.exists(RECORD_KEY + sms_id)
        assert await service.app.state.services.sms.queue.length() == 0


async def test_a_retried_enqueue_stores_and_queues_once(settings: Settings) -> None:
    """A client retrying after a lost reply must not queue (or count) the message twice."""
    async with running(settings) as service:
        sms = service.app.state.services.sms
        await worker(service).pause("sms")
        args = ('{"id": "x"}', "assistant:sms:x", {"status": "queued"}, 60, "assistant:u:1")
        assert await sms.queue.put(*args) is True
        assert await sms.queue.put(*args) is False  # the retry finds the record
        assert await sms.queue.length() == 1
        assert await sms.redis.hget("assistant:u:1", "accepted") == "1"
        assert await sms.redis.ttl("assistant:sms:x") > 0
        await sms.redis.delete(sms.queue.key, "assistant:sms:x", "assistant:u:1")
        worker(service).resume("sms")
