"""The api and worker roles (Compose runs one of each): the API queues, the worker delivers,
and each exports only its own share of the metrics, so no sum counts a value twice."""

from __future__ import annotations

import pytest

from assistant import Settings
from tests.service.backends import Postgres, Redis

from .harness import API, metric, running, settings_for
from .test_sms import BOTH_WORK, send_sms, until, user

pytestmark = [pytest.mark.service, pytest.mark.anyio]

SCRAPE_TIME_GAUGES = ("registered_users", "active_sessions", "sms_queue_length")


@pytest.fixture
def settings(fresh_database: Postgres, redis_flushed: Redis) -> Settings:
    return settings_for(
        fresh_database.url, redis_flushed.url, sms_providers=BOTH_WORK, queue_block_seconds=0.1
    )


async def test_the_api_queues_and_the_worker_delivers(settings: Settings) -> None:
    async with running(settings, role="api") as api:
        message = await send_sms(api, await user(api))
        api_scrape = await api.scrape()
        assert metric(api_scrape, "sms_queue_length") == 1  # no loop in the api: it waits
        assert (await api.client.get(f"/sms/{message}", headers=API)).json()["status"] == ("queued")
        async with running(settings, role="worker") as worker:

            async def delivered() -> bool:
                text = await worker.scrape()
                return metric(text, "sms_messages_total", provider="primary", status="success") == 1

            await until(delivered)
            assert (await api.client.get(f"/sms/{message}", headers=API)).json()["status"] == (
                "delivered"
            )
        assert metric(await api.scrape(), "sms_queue_length") == 0


async def test_the_worker_serves_only_health_and_metrics(settings: Settings) -> None:
    async with running(settings, role="worker") as worker:
        assert (await worker.client.get("/health/overall")).status_code == 200
        assert (await worker.client.post("/users", headers=API, json={})).status_code == 404
        assert (await worker.client.get("/users/1/integrations", headers=API)).status_code == 404
        text = await worker.scrape()
    for name in SCRAPE_TIME_GAUGES:
        assert metric(text, name) is None, f"{name} is exported by the api only"
    assert metric(text, "database_health_status") == 1


async def test_the_api_exports_the_state_gauges_once(settings: Settings) -> None:
    async with running(settings, role="api") as api:
        await user(api)
        text = await api.scrape()
    assert metric(text, "registered_users") == 1
    assert metric(text, "sms_queue_length") == 0


def test_an_unknown_role_is_refused() -> None:
    with pytest.raises(ValueError, match="role 'both' is not one of all, api, worker"):
        Settings(api_token="t", role="both")
