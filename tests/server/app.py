"""A small FastAPI app instrumented with app_metrics, served by the server tests.

uvicorn imports it as ``tests.server.app:app``. ``app`` is the instrumented FastAPI
app wrapped in a tiny ASGI layer that adds ``x-worker-pid`` to every response, so a
test can tell which worker answered, ``/metrics`` included.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import warnings
from collections.abc import AsyncIterator
from typing import Any

from fastapi import BackgroundTasks, FastAPI
from fastapi.responses import StreamingResponse

import app_metrics

SMS_QUEUE_LENGTH = 7
_background_done = 0

# Set by a test: the app's own root_path, as behind a proxy that does not strip the
# prefix (FastAPI deprecates the parameter in favour of the server's --root-path).
_ROOT_PATH = os.environ.get("TEST_APP_ROOT_PATH", "")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    api = FastAPI(root_path=_ROOT_PATH)


@api.get("/pid")
async def pid(block: float = 0.0) -> dict[str, int]:
    # Blocking the event loop on purpose lets the other worker accept connections.
    if block:
        time.sleep(min(block, 0.1))
    return {"pid": os.getpid()}


@api.get("/block")
async def block(seconds: float = 1.0) -> dict[str, float]:
    time.sleep(min(seconds, 10.0))  # a sync call in an async route: the loop runs nothing
    return {"blocked": seconds}


@api.get("/slow")
async def slow(seconds: float = 1.0) -> dict[str, float]:
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@api.get("/items/{item_id}")
async def item(item_id: int) -> dict[str, int]:
    return {"item_id": item_id}


@api.get("/stream")
async def stream(chunks: int = 20, delay: float = 0.05) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        for i in range(chunks):
            yield f"chunk {i}\n".encode()
            await asyncio.sleep(delay)

    return StreamingResponse(body(), media_type="text/plain")


async def _slow_task(seconds: float) -> None:
    global _background_done
    await asyncio.sleep(seconds)
    _background_done += 1


@api.get("/background")
async def background(tasks: BackgroundTasks, seconds: float = 0.5) -> dict[str, bool]:
    tasks.add_task(_slow_task, seconds)
    return {"scheduled": True}


@api.get("/background/done")
async def background_done() -> dict[str, int]:
    return {"done": _background_done}


async def database_check() -> bool:
    return True


# set by a test: the metrics listener's port (every worker shares it)
_METRICS_PORT = os.environ.get("TEST_APP_METRICS_PORT")
metrics = app_metrics.instrument(api, metrics_port=int(_METRICS_PORT) if _METRICS_PORT else None)
# bench/listener.py --switch-interval: how often the loop's thread hands the GIL to the
# listener's (the interpreter's setting, the whole process; Python's default 0.005 s)
_SWITCH = os.environ.get("TEST_APP_SWITCH_INTERVAL")
if _SWITCH:
    sys.setswitchinterval(float(_SWITCH))
metrics.sms.queue_length_from(lambda: SMS_QUEUE_LENGTH)
metrics.health.add("database", database_check)


class WorkerPidHeader:
    """Adds ``x-worker-pid`` to every HTTP response."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.header = (b"x-worker-pid", str(os.getpid()).encode())

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def send_with_pid(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.inner(scope, receive, send_with_pid)


app = WorkerPidHeader(api)
