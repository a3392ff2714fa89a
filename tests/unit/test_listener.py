"""The metrics listener on a real socket of 127.0.0.1, in this process: what it answers, its
bounds on what a client can make it hold, and through instrument() the token, the formats and
the scrape-time values of the in-app endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI

from app_metrics import lifecycle as lifecycle_module
from app_metrics import listener as listener_module
from app_metrics.listener import MAX_HEAD, Headers, MetricsListener

from .driver import call, isolated, samples

HOST = "127.0.0.1"


def fixed(method: str, headers: Headers, query: str) -> tuple[int, list, bytes]:
    return 200, [(b"x-query", query.encode())], b"metric 1.0\n"


@pytest.fixture
def served() -> Iterator[MetricsListener]:
    server = MetricsListener(HOST, 0, "/metrics", fixed)
    server.start()
    yield server
    server.stop()


def exchange(port: int, raw: bytes, timeout: float = 5.0) -> bytes:
    """Send ``raw`` on a new connection and read until the server closes it."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(raw)
        data = b""
        for _ in range(10_000):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def get(path: str = "/metrics", *headers: str, method: str = "GET") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}", "Connection: close", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def test_get_is_answered_with_the_body_and_head_with_its_length_only(
    served: MetricsListener,
) -> None:
    response = exchange(served.port, get("/metrics?name[]=x"))
    assert status(response) == 200 and response.endswith(b"\r\n\r\nmetric 1.0\n")
    assert b"x-query: name[]=x" in response and b"content-length: 11" in response
    head = exchange(served.port, get(method="HEAD"))
    assert status(head) == 200 and head.endswith(b"\r\n\r\n") and b"content-length: 11" in head


def test_other_paths_get_404_other_methods_405(served: MetricsListener) -> None:
    assert status(exchange(served.port, get("/metrics/"))) == 404
    assert status(exchange(served.port, get("/"))) == 404
    response = exchange(served.port, get(method="POST"))
    assert status(response) == 405 and b"allow: GET, HEAD" in response


@pytest.mark.parametrize(
    ("raw", "code", "says"),
    [
        (b"GARBAGE\r\n\r\n", 400, b"METHOD /path HTTP/1.1"),
        (b"GET http://x/metrics HTTP/1.1\r\n\r\n", 400, b"METHOD /path"),
        (b"GET /metrics HTTP/2.0\r\n\r\n", 505, b"HTTP/1.0 and HTTP/1.1 only"),
        (b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", 400, b"malformed header"),
        (b"GET /metrics HTTP/1.1\r\n folded: x\r\n\r\n", 400, b"malformed header"),
        (get("/metrics", "X-Big: " + "a" * MAX_HEAD), 431, b"over 8192 bytes"),
    ],
)
def test_a_bad_request_gets_a_clear_error_and_the_connection_closes(
    served: MetricsListener, raw: bytes, code: int, says: bytes
) -> None:
    response = exchange(served.port, raw)
    assert status(response) == code and says in response, response
    assert b"connection: close" in response


def test_a_head_that_never_ends_gets_408(
    monkeypatch: pytest.MonkeyPatch, served: MetricsListener
) -> None:
    monkeypatch.setattr(listener_module, "HEAD_TIMEOUT", 0.2)
    response = exchange(served.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
    assert status(response) == 408


def test_a_kept_alive_connection_serves_several_requests_and_a_body_ends_it(
    served: MetricsListener,
) -> None:
    one = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    with_body = b"GET /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
    response = exchange(served.port, one + one + with_body + one)
    assert response.count(b"HTTP/1.1 200 OK") == 3  # the fourth never read: closed
    assert response.count(b"connection: keep-alive") == 2
    assert response.count(b"connection: close") == 1


def test_connections_beyond_the_bound_get_503_and_stop_ends_the_open_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(listener_module, "MAX_CONNECTIONS", 2)
    server = MetricsListener(HOST, 0, "/metrics", fixed)
    server.start()
    idle = [socket.create_connection((HOST, server.port), timeout=5) for _ in range(2)]
    try:
        for sock in idle:  # each holds a slot once it has been answered once
            sock.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        response = exchange(server.port, get())
        assert status(response) == 503 and response.endswith(
            b"\r\n\r\ntoo many metrics connections\n"
        )
        assert b"content-length: 29" in response
    finally:
        server.stop()
        for sock in idle:
            assert sock.recv(4096) == b""  # closed by stop()
            sock.close()
    names = {t.name for t in threading.enumerate()}
    assert "app_metrics-listener" not in names and "app_metrics-scrape" not in names


def test_a_port_in_use_fails_start_with_an_oserror(served: MetricsListener) -> None:
    with pytest.raises(OSError, match="in use"):
        MetricsListener(HOST, served.port, "/metrics", fixed).start()


# --- through instrument() -------------------------------------------------------------------


@contextlib.contextmanager
def serving(app: Any) -> Iterator[list[str]]:
    """Run ``app``'s lifespan on a loop in another thread, as a server does; yields the
    lifespan messages it sent (startup done or failed), then shuts it down."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    events: list[str] = []
    answered = threading.Event()

    async def receive() -> dict[str, str]:
        return await queue.get()

    async def send(message: dict[str, str]) -> None:
        events.append(message["type"])
        answered.set()

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    loop.call_soon_threadsafe(queue.put_nowait, {"type": "lifespan.startup"})
    running = asyncio.run_coroutine_threadsafe(app(scope, receive, send), loop)
    try:
        assert answered.wait(5)
        yield events
    finally:
        loop.call_soon_threadsafe(queue.put_nowait, {"type": "lifespan.shutdown"})
        with contextlib.suppress(Exception):
            running.result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def scrape(port: int, *headers: str) -> tuple[int, dict[str, str], bytes]:
    response = exchange(port, get("/metrics", *headers))
    head, _, body = response.partition(b"\r\n\r\n")
    fields = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
    return status(response), fields, body


def test_the_listener_demands_the_token_and_serves_what_the_in_app_endpoint_serves() -> None:
    app = FastAPI()
    metrics = isolated(app, metrics_port=0, token="s3cret", const_labels={"service": "s"})
    metrics.sms.queue_length_from(lambda: 7)
    with serving(app) as events:
        assert events == ["lifespan.startup.complete"]
        port = metrics.listener.port
        code, fields, _ = scrape(port)
        assert code == 401 and fields["www-authenticate"] == 'Bearer realm="metrics"'
        assert scrape(port, "Authorization: Bearer wrong")[0] == 401
        code, fields, body = scrape(port, "Authorization: bearer s3cret")
        assert code == 200 and fields["content-type"].startswith("text/plain; version=0.0.4")
        found = samples(body.decode())
        assert found[("sms_queue_length", frozenset({("service", "s")}))] == 7.0
        assert ("event_loop_stall_seconds", frozenset({("service", "s")})) in found
        code, fields, body = scrape(
            port,
            "Authorization: Bearer s3cret",
            "Accept: application/openmetrics-text; version=1.0.0",
            "Accept-Encoding: gzip",
        )
        assert code == 200 and fields["content-type"].startswith("application/openmetrics-text")
        assert fields["content-encoding"] == "gzip"
        assert gzip.decompress(body).endswith(b"# EOF\n")
    assert not metrics.listener.running and not metrics.event_loop.running


def test_a_blocked_loop_does_not_hold_up_the_listener_and_its_stall_shows() -> None:
    app = FastAPI()
    metrics = isolated(app, metrics_port=0)
    metrics.sms.queue_length_from(lambda: 7)
    release = threading.Event()
    with serving(app):
        port = metrics.listener.port
        assert scrape(port)[0] == 200
        assert metrics.event_loop.loop is not None
        metrics.event_loop.loop.call_soon_threadsafe(release.wait, 10)  # the loop is blocked
        try:
            stall = 0.0
            deadline = time.monotonic() + 5
            while stall == 0.0 and time.monotonic() < deadline:
                code, _, body = scrape(port)
                assert code == 200 and not release.is_set()  # answered during the block
                stall = samples(body.decode())[("event_loop_stall_seconds", frozenset())]
            assert stall > 0
            assert samples(body.decode())[("sms_queue_length", frozenset())] == 7.0  # cached
        finally:
            release.set()


def test_a_listener_that_cannot_bind_fails_the_startup_and_says_why(
    served: MetricsListener,
) -> None:
    app = FastAPI()
    metrics = isolated(app, metrics_port=served.port)
    with serving(app) as events:
        assert events == ["lifespan.startup.failed"]
    assert not metrics.event_loop.running


def test_metrics_port_is_checked() -> None:
    with pytest.raises(ValueError, match=r"metrics_port must be an int within 0\.\.65535"):
        isolated(FastAPI(), metrics_port=70000)


def test_without_a_lifespan_the_first_request_starts_it_and_a_closed_loop_stops_it() -> None:
    app = FastAPI()

    @app.get("/running")
    async def running() -> bool:
        return metrics.listener is not None and metrics.listener.running

    metrics = isolated(app, metrics_port=0)
    assert metrics.listener is not None and not metrics.listener.running
    assert call(app, "/running").body == b"true"  # asyncio.run: a loop closed after it
    deadline = time.monotonic() + 5
    while metrics.listener.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not metrics.listener.running and not metrics.event_loop.running


def test_a_busy_loop_is_asked_to_refresh_after_the_answer_not_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lifecycle_module, "BUSY_LAG", -1.0)  # every loop counts as busy
    app = FastAPI()
    metrics = isolated(app, metrics_port=0)
    runs: list[float] = []
    metrics.sms.queue_length_from(lambda: runs.append(time.monotonic()) or float(len(runs)))
    queue = ("sms_queue_length", frozenset())
    with serving(app):
        port = metrics.listener.port
        code, _, body = scrape(port)
        assert code == 200 and queue not in samples(body.decode())  # not refreshed, not waited
        deadline = time.monotonic() + 5
        while not runs and time.monotonic() < deadline:
            time.sleep(0.01)
        assert runs  # asked once the answer was out
        assert samples(scrape(port)[2].decode())[queue] == 1.0  # served by the next scrape
