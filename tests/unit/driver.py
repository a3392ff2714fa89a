"""A minimal in-process ASGI client: full control over the scope, disconnects and timing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import app_metrics


@dataclass
class Result:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunks: int = 0
    complete: bool = False


async def request(
    app: Any,
    path: str,
    *,
    method: str = "GET",
    headers: Iterable[tuple[str, str]] = (),
    root_path: str = "",
    query: bytes = b"",
    disconnect_after_chunks: int | None = None,
    disconnect_after_seconds: float | None = None,
) -> Result:
    """Send one request; with ``disconnect_after_chunks`` (or ``_seconds``) the client leaves
    after that many body chunks (or seconds): ``receive`` then returns ``http.disconnect``
    and ``send`` drops messages, as uvicorn does."""
    result = Result()
    gone = asyncio.Event()
    requested = False
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": root_path + path,
        "raw_path": (root_path + path).encode(),
        "root_path": root_path,
        "query_string": query,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if gone.is_set():  # like uvicorn: once the client left, that is all there is
            return {"type": "http.disconnect"}
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if gone.is_set():
            return  # like uvicorn: a response to a client that left is dropped silently
        if message["type"] == "http.response.start":
            result.status = message["status"]
            result.headers = {k.decode(): v.decode() for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            result.body += message.get("body", b"")
            result.chunks += 1
            result.complete = not message.get("more_body", False)
            if disconnect_after_chunks is not None and result.chunks >= disconnect_after_chunks:
                gone.set()

    if disconnect_after_seconds is not None:
        asyncio.get_running_loop().call_later(disconnect_after_seconds, gone.set)
    await app(scope, receive, send)
    return result


def call(app: Any, path: str, **kwargs: Any) -> Result:
    return asyncio.run(request(app, path, **kwargs))


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Parse an exposition into {(sample name, labels): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample, matching the given labels exactly (None when absent)."""
    return samples(text).get((name, frozenset(labels.items())))


def scrape(app: Any, **kwargs: Any) -> str:
    result = call(app, "/metrics", **kwargs)
    assert result.status == 200, result
    return result.body.decode()


def isolated(app: Any, **options: Any) -> app_metrics.Metrics:
    """Instrument ``app`` with a registry of its own (unless the test passes one)."""
    options.setdefault("registry", CollectorRegistry())
    return app_metrics.instrument(app, **options)


def counted(app: Any, endpoint: str, status: str = "200", method: str = "GET") -> float | None:
    """``http_requests_total`` for one label set, from a fresh scrape."""
    return value(
        scrape(app), "http_requests_total", method=method, endpoint=endpoint, status=status
    )
