"""Finding 4: phone verification brute-forced and abused for SMS cost.

Each test tries the attack on the real service (in-process, lifespan and delivery loops
included) on real PostgreSQL and Redis, the fixtures of tests/service.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import re
import time
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from assistant import Settings
from tests.security.conftest import Attack
from tests.service import conftest as service_fixtures
from tests.service.harness import API, InProcess, metric, serve

pytestmark = [pytest.mark.service, pytest.mark.anyio]

# tests/service's real PostgreSQL and Redis, for this module only
postgres = service_fixtures.postgres
redis = service_fixtures.redis
fresh_database = service_fixtures.fresh_database
redis_flushed = service_fixtures.redis_flushed
settings = service_fixtures.settings

Record = Callable[[str, str], Attack]
VICTIM = "+14155550123"


async def register(service: InProcess, n: int, phone: str = VICTIM) -> int:
    body = {"email": f"user{n}@example.com", "name": f"User {n}", "phone": phone}
    response = await service.client.post("/users", headers=API, json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def ask_code(service: InProcess, user_id: int, phone: str | None = None):  # type: ignore[no-untyped-def]
    body = {} if phone is None else {"phone": phone}
    url = f"/users/{user_id}/phone/verification"
    return await service.client.post(url, headers=API, json=body)


async def answer(service: InProcess, user_id: int, code: str):  # type: ignore[no-untyped-def]
    url = f"/users/{user_id}/phone/verification/confirm"
    return await service.client.post(url, headers=API, json={"code": code})


def wrong(code: str, n: int) -> str:
    """The ``n``-th wrong guess for ``code``: never the code itself."""
    guess = f"{n:06d}"
    return guess if guess != code else f"{n + 500000:06d}"


def refused_in_time(response, window: float) -> bool:  # type: ignore[no-untyped-def]
    """429 with a Retry-After in whole seconds within the limit's window."""
    retry = response.headers.get("Retry-After", "")
    return response.status_code == 429 and retry.isdigit() and 1 <= int(retry) <= window


async def refusals(service: InProcess, limit: str) -> float | None:
    return metric(await service.scrape(), "phone_verification_refusals_total", limit=limit)


async def test_brute_force_across_reissued_codes_is_refused(
    settings: Settings, attack: Record
) -> None:
    a = attack(
        "guess codes, re-issuing each time the attempts run out",
        "5 guesses per user per hour whatever the codes issued, then 429 + Retry-After",
    )
    async with serve(settings) as service:
        uid = await register(service, 1)
        judged, answers = 0, []
        for round_ in range(3):  # three codes: today each one gets its own 5 attempts
            issued = await ask_code(service, uid)
            answers.append(issued.status_code)
            code = service.codes[-1]
            for n in range(settings.verification_max_attempts):
                response = await answer(service, uid, wrong(code, 10 * round_ + n))
                answers.append(response.status_code)
                judged += response.status_code == 400
        last = await answer(service, uid, service.codes[-1])  # even the right code, now
        a.happened = (
            f"{judged} guesses judged over 3 codes; then the right code: {last.status_code}"
        )
        assert judged == settings.verification_max_attempts, answers
        assert refused_in_time(last, settings.verification_attempt_window_seconds)
        assert last.json()["error"] == "too_many_attempts"
        again = await ask_code(service, uid)  # a code nobody may answer is not sent
        assert refused_in_time(again, settings.verification_attempt_window_seconds)
        assert len(service.codes) == 1, "the codes issued after the attempts ran out"
        assert (await refusals(service, "attempts") or 0) >= 1
    a.blocked = True


async def test_concurrent_guesses_cannot_exceed_the_attempts(
    settings: Settings, attack: Record
) -> None:
    a = attack(
        "20 wrong guesses for one code at once",
        "5 judged (attempts counted atomically), the rest 429",
    )
    async with serve(settings) as service:
        uid = await register(service, 1)
        assert (await ask_code(service, uid)).status_code == 202
        code = service.codes[-1]
        guesses = [answer(service, uid, wrong(code, n)) for n in range(20)]
        statuses = [r.status_code for r in await asyncio.gather(*guesses)]
        judged = statuses.count(400)
        a.happened = f"{judged} judged, {statuses.count(429)} refused with 429"
        assert judged == settings.verification_max_attempts, statuses
        assert statuses.count(429) == 20 - judged, statuses
    a.blocked = True


async def test_one_phone_gets_a_bounded_number_of_codes(settings: Settings, attack: Record) -> None:
    a = attack(
        "SMS-bomb one phone: 10 codes through 10 accounts that name it",
        "3 per phone per hour, then 429 + Retry-After and no SMS",
    )
    async with serve(settings) as service:
        users = [await register(service, n, phone="+14155550999") for n in range(10)]
        answers = [await ask_code(service, uid, VICTIM) for uid in users]
        sent = [r.status_code for r in answers].count(202)
        a.happened = f"{sent} of 10 codes sent to one phone"
        assert sent == settings.verification_phone_limit, [r.status_code for r in answers]
        window = settings.verification_phone_window_seconds
        assert all(refused_in_time(r, window) for r in answers[sent:])
        assert answers[-1].json()["error"] == "too_many_codes"
        assert len(service.codes) == sent, "an SMS went out for a refused code"
        assert await refusals(service, "phone") == 10 - sent
    a.blocked = True


async def test_concurrent_requests_cannot_exceed_the_phone_limit(
    settings: Settings, attack: Record
) -> None:
    a = attack(
        "10 codes for one phone at once, through 10 accounts",
        "3 sent (counters taken atomically), 7 refused",
    )
    async with serve(settings) as service:
        users = [await register(service, n) for n in range(10)]
        answers = await asyncio.gather(*(ask_code(service, uid) for uid in users))
        sent = [r.status_code for r in answers].count(202)
        a.happened = f"{sent} of 10 concurrent requests sent a code"
        assert sent == settings.verification_phone_limit
        assert len(service.codes) == sent
    a.blocked = True


async def test_one_user_gets_a_bounded_number_of_codes(settings: Settings, attack: Record) -> None:
    a = attack(
        "one account asks codes for 10 different phones (SMS pumping)",
        "5 per user per hour, then 429 + Retry-After",
    )
    async with serve(settings) as service:
        uid = await register(service, 1)
        answers = [await ask_code(service, uid, f"+4477009001{n:02d}") for n in range(10)]
        sent = [r.status_code for r in answers].count(202)
        a.happened = f"{sent} of 10 codes sent for one user"
        assert sent == settings.verification_user_limit, [r.status_code for r in answers]
        window = settings.verification_user_window_seconds
        assert all(refused_in_time(r, window) for r in answers[sent:])
        assert len(service.codes) == sent
        assert await refusals(service, "user") == 10 - sent
    a.blocked = True


async def test_one_client_gets_a_bounded_number_of_codes(
    settings: Settings, attack: Record
) -> None:
    a = attack(
        "the API client asks codes for many users and phones (SMS pumping)",
        "the client's budget per hour (here 4), then 429 for everyone",
    )
    limited = dataclasses.replace(settings, verification_client_limit=4)
    async with serve(limited) as service:
        users = [await register(service, n, phone=f"+4477009002{n:02d}") for n in range(8)]
        answers = [await ask_code(service, uid) for uid in users]
        sent = [r.status_code for r in answers].count(202)
        a.happened = f"{sent} of 8 codes sent to 8 users and phones"
        assert sent == 4, [r.status_code for r in answers]
        window = limited.verification_client_window_seconds
        assert all(refused_in_time(r, window) for r in answers[sent:])
        assert len(service.codes) == sent
        assert await refusals(service, "client") == 8 - sent
    a.blocked = True


async def in_flight(r: aioredis.Redis) -> int:
    """SMS waiting or being delivered: the queue and its consumers' processing lists."""
    keys = [k async for k in r.scan_iter("assistant:queue:sms*", count=1000)]
    lists = [k for k in keys if await r.type(k) == "list"]
    return sum([await r.llen(k) for k in lists])


async def test_the_stored_value_is_not_the_code(settings: Settings, attack: Record) -> None:
    a = attack(
        "read the pending code from Redis",
        "only a keyed hash is stored; no key holds the code once the SMS is out",
    )
    async with serve(settings) as service:
        uid = await register(service, 1)
        assert (await ask_code(service, uid)).status_code == 202
        code = service.codes[-1]
        r: aioredis.Redis = service.app.state.services.redis
        deadline = time.monotonic() + 10
        while await in_flight(r):  # the SMS carries the code until the provider has it
            assert time.monotonic() < deadline, "the code's SMS was not delivered within 10 s"
            await asyncio.sleep(0.05)
        found = []
        async for key in r.scan_iter("*", count=1000):
            kind = await r.type(key)
            if kind == "hash":
                values = list((await r.hgetall(key)).values())
            elif kind == "list":
                values = await r.lrange(key, 0, -1)
            elif kind == "string":
                values = [await r.get(key)]
            else:
                values = []
            plain_hash = hashlib.sha256(code.encode()).hexdigest()
            if any(re.search(rf"(?<!\d){code}(?!\d)", v) or plain_hash in v for v in values):
                found.append(key)
        record = await r.hgetall(f"assistant:phone_code:{uid}")
        a.happened = f"the code found in {found or 'no key'}; the record's fields: {sorted(record)}"
        assert record, "the pending code's record"
        assert not found
        assert (await answer(service, uid, code)).status_code == 200  # the hash still matches
    a.blocked = True
