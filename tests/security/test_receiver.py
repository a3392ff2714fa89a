"""Finding 8, the webhook receiver (``receiver/webhook_receiver.py``), as a real process: a bad
``Content-Length`` is a 400, what it keeps in memory is bounded in count and bytes, it reads
only the tail of its JSONL log at start, and a silent client is cut off."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from stack.processes import free_port
from tests.security.conftest import Attack
from tests.security.processes import HOST, Running, exchange, request, server_spoke
from tests.server.conftest import stop_process_group

REPO = Path(__file__).resolve().parents[2]
RECEIVER = str(REPO / "receiver" / "webhook_receiver.py")
MiB = 1 << 20
BODY = 4 * MiB - 4096  # just under the receiver's limit per notification
AttackFn = Callable[[str, str], Attack]


@contextmanager
def receiver(tmp_path: Path, log: Path, *args: str) -> Iterator[Running]:
    port = free_port()
    output = tmp_path / f"receiver-{port}.log"
    argv = [sys.executable, RECEIVER, "--host", HOST, "--port", str(port), "--log", str(log)]
    with output.open("wb") as out:
        proc = subprocess.Popen(
            [*argv, *args], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    running = Running(proc, port, output)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, f"exited {proc.returncode}:\n{running.log_tail()}"
            try:
                if exchange(port, request("GET", "/-/healthy")).status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, running.log_tail()
            time.sleep(0.05)
        yield running
    finally:
        stop_process_group(proc)


def notification(n: int, size: int = 200) -> bytes:
    return json.dumps({"receiver": "oncall", "n": n, "pad": "a" * size}).encode()


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "notifications.jsonl"


@pytest.mark.parametrize("length", ["abc", "1e3", "0x10"])
def test_a_bad_content_length_is_a_400(
    tmp_path: Path, log: Path, attack: AttackFn, length: str
) -> None:
    a = attack(f"POST with Content-Length: {length!r}", "400")
    with receiver(tmp_path, log) as running:
        raw = request("POST", "/oncall", {"Content-Length": length}) + b"{}"
        try:
            status = exchange(running.port, raw).status
        except (AssertionError, OSError) as exc:  # closed without an answer
            status = 0
            a.happened = f"no answer ({type(exc).__name__})"
        if status:
            a.happened = str(status)
        assert status == 400
        assert exchange(running.port, request("GET", "/-/healthy")).status == 200
    a.blocked = True


def test_memory_is_bounded_in_count_and_bytes(tmp_path: Path, log: Path, attack: AttackFn) -> None:
    a = attack("24 notifications of 4 MiB each", "memory stays bounded (16 MiB kept)")
    with receiver(tmp_path, log) as running:
        base = running.rss_bytes()
        for n in range(24):
            reply = exchange(running.port, request("POST", "/oncall", {}, notification(n, BODY)))
            assert reply.status == 200
        grew = running.rss_bytes() - base
        kept = json.loads(exchange(running.port, request("GET", "/notifications")).body)
        a.happened = f"{len(kept)} kept, memory +{grew / MiB:.0f} MiB"
        assert grew < 48 * MiB
        assert [item["payload"]["n"] for item in kept] == list(range(24 - len(kept), 24))
        assert 1 <= len(kept) <= 4
        for n in range(1100):  # small ones: the count is bounded too
            body = notification(n)
            exchange(running.port, request("POST", "/oncall", {}, body))
        kept = json.loads(exchange(running.port, request("GET", "/notifications")).body)
        assert len(kept) == 1000 and kept[-1]["payload"]["n"] == 1099
    a.blocked = True


def test_only_the_tail_of_the_log_is_read_at_start(
    tmp_path: Path, log: Path, attack: AttackFn
) -> None:
    a = attack("start on a 64 MiB notifications log", "only its tail read")
    with log.open("w") as f:
        for n in range(16):
            payload = json.loads(notification(n, BODY))
            f.write(json.dumps({"received_at": 0, "path": "/oncall", "payload": payload}) + "\n")
    with receiver(tmp_path, log) as running:
        peak = running.peak_rss_bytes()
        kept = json.loads(exchange(running.port, request("GET", "/notifications")).body)
    a.happened = f"peak memory {peak / MiB:.0f} MiB, {len(kept)} notifications loaded"
    assert peak < 80 * MiB
    assert [item["payload"]["n"] for item in kept] == list(range(16 - len(kept), 16))
    a.blocked = True


def test_a_silent_client_is_cut_off(tmp_path: Path, log: Path, attack: AttackFn) -> None:
    a = attack("a connection that sends nothing; a body that stops", "closed after 1 s")
    with receiver(tmp_path, log, "--timeout", "1") as running:
        took = []
        for raw in (b"", request("POST", "/oncall", {"Content-Length": "100"}) + b'{"a"'):
            with socket.create_connection((HOST, running.port), timeout=5) as sock:
                sock.sendall(raw)
                start = time.monotonic()
                spoke = server_spoke(sock, 4)
                took.append(time.monotonic() - start if spoke else None)
    a.happened = ", ".join(f"closed after {t:.1f} s" if t else "open after 4 s" for t in took)
    assert all(t is not None and t < 3 for t in took)
    a.blocked = True
