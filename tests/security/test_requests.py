"""Finding 2: request bodies and slow clients, against a real ``python -m assistant`` on a raw
socket. Authentication is decided before a body is read; a body over the limit is refused
(413) without being read further; slow heads and bodies time out; oversized heads and
connections beyond the limit are refused."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.security.conftest import Attack
from tests.security.processes import (
    HOST,
    TOKEN,
    Pump,
    Running,
    assistant,
    exchange,
    read_reply,
    request,
    server_spoke,
    small_send_buffer,
)

pytestmark = pytest.mark.server

MiB = 1 << 20
ATTACK_BYTES = 64 * MiB
# Bytes the kernels may take before anyone reads: the client's small send buffer plus the
# server's receive buffer (autotuned up to tcp_rmem's maximum, 6 MiB by default).
KERNEL_SLACK = 16 * MiB
TIMEOUT = 1.0  # the head and body timeouts of the server under test
AUTH = {"Authorization": f"Bearer {TOKEN}"}
USER = b'{"email": "ann@example.com", "name": "Ann"}'

AttackFn = Callable[[str, str], Attack]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    env = {
        "ASSISTANT_HEADER_TIMEOUT_SECONDS": str(TIMEOUT),
        "ASSISTANT_BODY_TIMEOUT_SECONDS": str(TIMEOUT),
    }
    with assistant(tmp_path_factory.mktemp("requests"), **env) as running:
        yield running


def flood(server: Running, headers: dict[str, str], chunked: bool = False) -> tuple[int, int, int]:
    """POST /users with a 64 MiB body sent as fast as the server takes it; the status, the
    bytes the kernel accepted, and how much the server's peak memory grew."""
    peak = server.peak_rss_bytes()
    with socket.create_connection((HOST, server.port), timeout=5.0) as sock:
        small_send_buffer(sock)
        framing = (
            {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(ATTACK_BYTES)}
        )
        sock.sendall(
            request("POST", "/users", {**headers, **framing, "Content-Type": "application/json"})
        )
        pump = Pump(sock, ATTACK_BYTES, chunked).start()
        try:
            status = read_reply(sock).status
        except TimeoutError:
            status = 0  # no answer within the socket's timeout
        pump.join()
    return status, pump.sent, server.peak_rss_bytes() - peak


def test_an_anonymous_64_mib_post_is_refused_before_its_body_is_read(
    server: Running, attack: AttackFn
) -> None:
    a = attack("anonymous 64 MiB POST /users", "401 before the body is read")
    status, sent, grew = flood(server, {})
    a.happened = f"{status} after {sent / MiB:.1f} MiB sent, peak memory +{grew / MiB:.1f} MiB"
    assert status == 401
    assert sent < KERNEL_SLACK and grew < 16 * MiB
    a.blocked = True


def test_an_anonymous_chunked_post_is_refused_before_its_body_is_read(
    server: Running, attack: AttackFn
) -> None:
    a = attack("anonymous chunked 64 MiB POST /users", "401 before the body is read")
    status, sent, grew = flood(server, {}, chunked=True)
    a.happened = f"{status} after {sent / MiB:.1f} MiB sent, peak memory +{grew / MiB:.1f} MiB"
    assert status == 401
    assert sent < KERNEL_SLACK and grew < 16 * MiB
    a.blocked = True


def test_anonymous_invalid_json_gets_401_not_422(server: Running, attack: AttackFn) -> None:
    a = attack("anonymous invalid JSON to POST /users", "401 (the body is not looked at)")
    reply = exchange(
        server.port, request("POST", "/users", {"Content-Type": "application/json"}, b"{not json")
    )
    a.happened = f"{reply.status} {reply.body[:60]!r}"
    assert reply.status == 401 and reply.headers.get("www-authenticate") == "Bearer"
    a.blocked = True


def test_a_declared_length_over_the_limit_gets_413_unread(
    server: Running, attack: AttackFn
) -> None:
    a = attack("API token, 64 MiB Content-Length", "413 without reading the body")
    status, sent, grew = flood(server, AUTH)
    a.happened = f"{status} after {sent / MiB:.1f} MiB sent, peak memory +{grew / MiB:.1f} MiB"
    assert status == 413
    assert sent < KERNEL_SLACK and grew < 16 * MiB
    a.blocked = True


def test_a_chunked_body_over_the_limit_gets_413_while_it_streams(
    server: Running, attack: AttackFn
) -> None:
    a = attack("API token, chunked body without end", "413 once the limit is crossed")
    status, sent, grew = flood(server, AUTH, chunked=True)
    a.happened = f"{status} after {sent / MiB:.1f} MiB sent, peak memory +{grew / MiB:.1f} MiB"
    assert status == 413
    assert sent < KERNEL_SLACK and grew < 16 * MiB
    a.blocked = True


def test_a_body_within_the_limit_still_reaches_the_route(server: Running) -> None:
    reply = exchange(
        server.port, request("POST", "/users", {**AUTH, "Content-Type": "application/json"}, USER)
    )
    assert reply.status == 503  # validated, then the database (a closed port) is unavailable
    assert reply.headers["retry-after"]


def test_a_slow_request_head_is_cut_off(server: Running, attack: AttackFn) -> None:
    a = attack("slowloris: a header, one byte every 0.2 s", "closed after the head timeout")
    with socket.create_connection((HOST, server.port), timeout=5.0) as sock:
        sock.sendall(b"POST /users HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        start, closed_after = time.monotonic(), None
        while closed_after is None and time.monotonic() - start < 5 * TIMEOUT:
            try:
                sock.sendall(b"a")
                spoke = server_spoke(sock, 0.2)
            except OSError:
                spoke = True
            if spoke:
                closed_after = time.monotonic() - start
    a.happened = f"closed after {closed_after:.1f} s" if closed_after else "still open after 5 s"
    assert closed_after is not None and closed_after < 3 * TIMEOUT
    a.blocked = True


def test_a_connection_that_sends_nothing_is_closed(server: Running, attack: AttackFn) -> None:
    a = attack("a connection that never sends a byte", "closed after the head timeout")
    with socket.create_connection((HOST, server.port), timeout=4 * TIMEOUT) as sock:
        start = time.monotonic()
        try:
            data = sock.recv(4096)
            took: float | None = time.monotonic() - start
        except TimeoutError:
            data, took = b"", None
    a.happened = f"{data[:12]!r} after {took:.1f} s" if took else "still open after 4 s"
    assert took is not None and took < 3 * TIMEOUT
    a.blocked = True


def test_a_stalled_body_times_out(server: Running, attack: AttackFn) -> None:
    a = attack("API token, 10 of 1,000 body bytes, then silence", "408 after the body timeout")
    headers = {**AUTH, "Content-Length": "1000", "Content-Type": "application/json"}
    with socket.create_connection((HOST, server.port), timeout=5 * TIMEOUT) as sock:
        started = time.monotonic()
        sock.sendall(request("POST", "/users", headers) + b'{"email": ')
        try:
            reply = read_reply(sock, started)
            a.happened = f"{reply.status} after {reply.seconds:.1f} s"
        except TimeoutError:
            reply = None
            a.happened = f"no answer after {5 * TIMEOUT:g} s"
    assert reply is not None and reply.status == 408 and reply.closed
    assert reply.seconds < 3 * TIMEOUT
    a.blocked = True


def test_a_request_head_over_the_limit_is_refused(server: Running, attack: AttackFn) -> None:
    a = attack("a 12 KiB request header", "431 and closed (8 KiB limit)")
    reply = exchange(server.port, request("GET", "/metrics", {"X-Pad": "a" * 12 * 1024}), watch=0.5)
    a.happened = f"{reply.status}, closed: {reply.closed}"
    assert reply.status in (400, 431) and reply.closed
    a.blocked = True


def test_connections_beyond_the_limit_get_503(tmp_path: Path, attack: AttackFn) -> None:
    a = attack("4 idle connections, then a request (limit 4)", "503 until some close")
    with assistant(tmp_path, ASSISTANT_MAX_CONNECTIONS="4") as server:
        held = [socket.create_connection((HOST, server.port), timeout=5.0) for _ in range(4)]
        try:
            time.sleep(0.2)  # accepted by the server's loop
            reply = exchange(server.port, request("GET", "/metrics"))
        finally:
            for sock in held:
                sock.close()
        a.happened = str(reply.status)
        assert reply.status == 503
        a.blocked = True
