"""Drive the assistant app in-process, lifespan included (tests only)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from assistant.app import create_app
from assistant.config import Settings

TOKEN = "test-api-token"
API = {"Authorization": f"Bearer {TOKEN}"}


def settings_for(database_url: str, redis_url: str, **overrides: Any) -> Settings:
    """Settings for a test app on the fixtures' servers; every scrape reads them afresh, and
    a health check's result is shared for 10 ms only (a request in turn sees a fresh one)."""
    fields: dict[str, Any] = {
        "api_token": TOKEN,
        "metrics_source_ttl_seconds": 0,
        "health_interval_seconds": 0.01,
    }
    return Settings(database_url=database_url, redis_url=redis_url, **(fields | overrides))


@dataclass
class InProcess:
    app: FastAPI
    client: httpx.AsyncClient
    codes: list[str] = field(default_factory=list)  # verification codes "sent", oldest first

    async def scrape(self) -> str:
        response = await self.client.get("/metrics")
        response.raise_for_status()
        return response.text


@asynccontextmanager
async def serve(settings: Settings, timeout: float = 10.0) -> AsyncIterator[InProcess]:
    """Start an app on its own registry (its lifespan too), with a client speaking ASGI to
    it and the codes it sends (as SMS, through the queue) recorded; stop it on exit."""
    codes: list[str] = []
    app = create_app(settings, registry=CollectorRegistry())
    services = app.state.services

    async def record(user_id: int, phone: str, code: str) -> None:
        await services.sms.send_code(user_id, phone, code)  # the real path: an SMS via the queue
        codes.append(code)

    app.state.services = dataclasses.replace(services, send_code=record)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=timeout) as c,
    ):
        yield InProcess(app, c, codes)


@asynccontextmanager
async def running(settings: Settings, **overrides: Any) -> AsyncIterator[InProcess]:
    """``serve`` on ``settings`` with some fields replaced."""
    async with serve(dataclasses.replace(settings, **overrides)) as service:
        yield service


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of sample ``name{labels}`` in an exposition, or None when it is absent."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None
