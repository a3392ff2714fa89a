from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

import app_metrics


@pytest.fixture
def make_app() -> Callable[..., tuple[FastAPI, app_metrics.Metrics]]:
    """A FastAPI app with a few routes, instrumented with an isolated registry."""

    def make(**options: Any) -> tuple[FastAPI, app_metrics.Metrics]:
        app = FastAPI()

        @app.get("/items/{item_id}")
        async def item(item_id: int) -> dict[str, int]:
            return {"id": item_id}

        @app.post("/items")
        async def create() -> dict[str, bool]:
            return {"ok": True}

        options.setdefault("registry", CollectorRegistry())
        return app, app_metrics.instrument(app, **options)

    return make
