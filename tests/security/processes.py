"""Real processes for the security suite, and a raw HTTP client that misbehaves on purpose.

``assistant(tmp_path, **env)`` runs ``python -m assistant`` (the real entry point, the image's
command) on a free 127.0.0.1 port in its own session, and stops it by PID (its process group:
SIGTERM, a bounded wait, SIGKILL) whatever the test's outcome. Unless ``env`` says otherwise
its database and Redis are a closed port: the app starts anyway, and what a test attacks (the
request limits, the health endpoints, the Host check) answers before either is needed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from stack.processes import free_port
from tests.server.conftest import stop_process_group

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
TOKEN = "security-api-token"
START_TIMEOUT = 20.0
CLOSED_PORT = 1  # nothing listens there: connections are refused at once


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def peak_rss_bytes(self) -> int:
        """The process's peak resident memory so far (VmHWM)."""
        return _status_kib(self.proc.pid, "VmHWM") * 1024

    def rss_bytes(self) -> int:
        return _status_kib(self.proc.pid, "VmRSS") * 1024


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} in /proc/{pid}/status")


def assistant_env(port: int, **env: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    keep.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return keep | {
        "ASSISTANT_HOST": HOST,
        "ASSISTANT_PORT": str(port),
        "ASSISTANT_ROLE": "api",  # no delivery loops: nothing to retry against a dead Redis
        "ASSISTANT_API_TOKEN": TOKEN,
        "ASSISTANT_DATABASE_URL": f"postgresql+asyncpg://nobody@{HOST}:{CLOSED_PORT}/none",
        "ASSISTANT_REDIS_URL": f"redis://{HOST}:{CLOSED_PORT}/0",
        **env,
    }


@contextmanager
def assistant(tmp_path: Path, **env: str) -> Iterator[Running]:
    """``python -m assistant`` with ``env`` on top of the defaults above; ready when it
    answers HTTP at all."""
    port = free_port()
    log_path = tmp_path / f"assistant-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "assistant"],
            cwd=REPO,
            env=assistant_env(port, **env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = Running(proc, port, log_path)
    try:
        _wait_answering(running)
        yield running
    finally:
        stop_process_group(proc)


def _wait_answering(running: Running) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    for _ in range(1000):
        if running.proc.poll() is not None:
            raise AssertionError(f"exited with {running.proc.returncode}:\n{running.log_tail()}")
        with suppress(OSError, AssertionError):
            if exchange(running.port, request("GET", "/metrics")).status:
                return
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    raise AssertionError(f"not answering after {START_TIMEOUT} s:\n{running.log_tail()}")


# --- raw HTTP ---------------------------------------------------------------------------


def request(
    method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    """A request head (and body); ``Host: 127.0.0.1`` unless ``headers`` names another."""
    fields = {"Host": HOST} | (headers or {})
    if body and "Content-Length" not in fields and "Transfer-Encoding" not in fields:
        fields["Content-Length"] = str(len(body))
    lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in fields.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool = False  # the server closed the connection after this reply
    seconds: float = 0.0  # from the first byte sent to the reply's last byte


def read_reply(sock: socket.socket, started: float | None = None, watch: float = 0.5) -> Reply:
    """One response from ``sock`` (bounded by its timeout and 1 MiB), then whether the server
    closed the connection (a look of ``watch`` seconds; none when 0)."""
    started = time.monotonic() if started is None else started
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response: {data[:300]!r}")
        data += chunk
        if len(data) > 1 << 20:
            raise AssertionError("response head over 1 MiB")
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    rest = bytearray(body)
    while len(rest) < length:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        rest += chunk
    body = bytes(rest)
    seconds = time.monotonic() - started
    closed = _closed(sock, watch) if watch else False
    return Reply(int(status_line.split()[1]), headers, body, closed, seconds)


def _closed(sock: socket.socket, wait: float = 0.5) -> bool:
    previous = sock.gettimeout()
    sock.settimeout(wait)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True  # reset
    finally:
        sock.settimeout(previous)


def exchange(port: int, raw: bytes, timeout: float = 5.0, watch: float = 0.0) -> Reply:
    """Send ``raw`` on a new connection and read one response (``watch``: see read_reply)."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        started = time.monotonic()
        sock.sendall(raw)
        return read_reply(sock, started, watch)


@dataclass
class Pump:
    """Sends up to ``total`` body bytes in a thread, as fast as the server takes them;
    ``sent`` is what the kernel accepted before the server closed or stopped reading."""

    sock: socket.socket
    total: int
    chunked: bool = False
    sent: int = 0
    error: str = ""
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> Pump:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        piece = b"x" * 65536
        if self.chunked:
            piece = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        try:
            while self.sent < self.total:
                self.sock.sendall(piece)
                self.sent += len(piece)
        except OSError as exc:  # reset, broken pipe, or the socket's timeout
            self.error = type(exc).__name__

    def join(self, timeout: float = 15.0) -> None:
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the body pump did not stop"


def small_send_buffer(sock: socket.socket) -> None:
    """Keep the client's own buffering small, so ``Pump.sent`` tracks what the server took."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)


def server_spoke(sock: socket.socket, wait: float) -> bool:
    """Whether the server sent anything, closed or reset the connection within ``wait``."""
    previous = sock.gettimeout()
    sock.settimeout(wait)
    try:
        sock.recv(4096)
        return True
    except TimeoutError:
        return False
    except OSError:
        return True
    finally:
        sock.settimeout(previous)
