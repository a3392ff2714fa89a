"""Streaming responses on a single real uvicorn process: complete, and cut by the client."""

from __future__ import annotations

import socket
import struct
import time

import pytest

from .conftest import Scrape, StartServer, poll_scrape, raw_request, read_until, scrape

pytestmark = pytest.mark.server

CHUNKS = 20
DELAY = 0.05
STREAM_SECONDS = CHUNKS * DELAY  # the route sleeps DELAY after each chunk
ROUTE = "/stream"


def statuses(s: Scrape, route: str = ROUTE) -> dict[str, float]:
    return {x.labels["status"]: x.value for x in s.select("http_requests_total", endpoint=route)}


@pytest.mark.parametrize("close", ["fin", "rst"])
def test_client_disconnect_mid_stream_is_counted_as_499(
    start_server: StartServer, close: str
) -> None:
    server = start_server()
    started = time.monotonic()
    sock = raw_request(server, f"{ROUTE}?chunks={CHUNKS}&delay={DELAY}")
    try:
        head = read_until(sock, b"chunk 0\n")
        assert head.startswith(b"HTTP/1.1 200 "), head[:200]
        if close == "rst":  # abortive close: the server sees a reset, not an orderly FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()

    counted = poll_scrape(server, lambda s: bool(statuses(s)))
    assert statuses(counted) == {"499": 1.0}
    assert counted.total("http_requests_in_progress") == 0
    # the stream was cut short, and the clock stopped then
    assert counted.total("http_request_duration_seconds_count", endpoint=ROUTE) == 1
    assert counted.total("http_request_duration_seconds_sum", endpoint=ROUTE) < STREAM_SECONDS

    # Once the full stream would have ended, it is still one 499 and no 200.
    time.sleep(max(0.0, started + STREAM_SECONDS + 0.3 - time.monotonic()))
    later = scrape(server)
    assert statuses(later) == {"499": 1.0}
    assert later.total("http_requests_in_progress") == 0


def test_complete_stream_is_counted_as_200_with_its_full_duration(
    start_server: StartServer,
) -> None:
    server = start_server()
    started = time.perf_counter()
    with (
        server.client.stream("GET", f"{ROUTE}?chunks={CHUNKS}&delay={DELAY}") as r,
    ):
        body = b"".join(r.iter_bytes())
    elapsed = time.perf_counter() - started
    assert r.status_code == 200
    assert body.count(b"chunk ") == CHUNKS

    counted = poll_scrape(server, lambda s: bool(statuses(s)))
    assert statuses(counted) == {"200": 1.0}
    assert counted.total("http_request_duration_seconds_count", endpoint=ROUTE) == 1
    duration = counted.total("http_request_duration_seconds_sum", endpoint=ROUTE)
    # at least the streaming time (1 ms for timer granularity), at most what the client saw
    # plus the server's own bookkeeping: its clock stops after its last send() returns and the
    # route is looked up, which a loaded machine can schedule after the client read the last
    # byte (CI once saw 1.0285 s against the client's 1.0243 s)
    assert STREAM_SECONDS - 0.001 <= duration <= elapsed + 0.05, (duration, elapsed)
    assert counted.total("http_requests_in_progress") == 0


def test_client_gone_before_a_slow_response_is_counted_as_499(start_server: StartServer) -> None:
    """Not a streaming response: the client gives up while the handler still works.

    uvicorn (ASGI spec 2.3) drops the response of a disconnected client without an
    error, so the app completes normally; the client never saw a byte of it.
    """
    server = start_server()
    seconds = 1.0
    started = time.monotonic()
    sock = raw_request(server, f"/slow?seconds={seconds}")
    try:
        busy = poll_scrape(server, lambda s: s.total("http_requests_in_progress") == 1)
        assert busy.total("http_requests_in_progress") == 1
    finally:
        sock.close()
    assert time.monotonic() - started < seconds / 2, "too slow to test a disconnect"

    time.sleep(max(0.0, started + seconds + 0.3 - time.monotonic()))
    counted = poll_scrape(server, lambda s: bool(statuses(s, "/slow")))
    assert counted.total("http_requests_in_progress") == 0
    assert statuses(counted, "/slow") == {"499": 1.0}, "a client that left was counted as served"
