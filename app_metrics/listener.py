"""The metrics listener: ``GET <metrics_path>`` on a socket and threads of its own.

A scrape of the in-app endpoint waits for the event loop, so it is late when the API is
saturated and never answered while a handler blocks the loop. The listener accepts on its own
thread and answers each connection on another; only the scrape-time refresh is asked of the
loop, for at most ``LOOP_WAIT``, not at all while it lags more than ``BUSY_LAG``
(``ScrapeTimeValues.refresh_from``: what the loop has not refreshed comes from the cache).

HTTP/1.0 and 1.1, as much as a scraper needs, every input bounded: a request head of at most
``MAX_HEAD`` bytes (431), complete within ``HEAD_TIMEOUT`` seconds (408); ``MAX_CONNECTIONS``
connections at once (503 beyond, at once); a kept-alive connection closed after
``KEEP_ALIVE`` idle seconds or ``MAX_REQUESTS`` requests; a request that announces a body is
answered, then its connection closed (the body is never read). Other paths get 404, other
methods 405, a malformed head 400, another HTTP version 505.

In multiprocess mode every worker binds the same port with ``SO_REUSEPORT`` (the kernel lets
only processes of the same user share it): the kernel hands each connection to one worker,
and each serves every worker's metrics, as the in-app endpoint does.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
from collections.abc import Callable
from time import monotonic

log = logging.getLogger("app_metrics")

MAX_HEAD = 8 * 1024
HEAD_TIMEOUT = 5.0
KEEP_ALIVE = 5.0
MAX_REQUESTS = 100
MAX_CONNECTIONS = 16
WRITE_TIMEOUT = 10.0
LOOP_WAIT = 0.005  # seconds a scrape waits for the event loop to refresh the scrape-time values
BUSY_LAG = 0.001  # seconds: a loop whose last beat was later than this has work queued

Headers = dict[bytes, bytes]  # lower-case names; repeated headers joined with ","
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]  # status, headers, body
# (method, headers, query) -> the answer for the metrics path (method GET or HEAD)
Respond = Callable[[str, Headers, str], Answer]

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            405: "Method Not Allowed", 408: "Request Timeout",
            431: "Request Header Fields Too Large", 500: "Internal Server Error",
            503: "Service Unavailable", 505: "HTTP Version Not Supported"}  # fmt: skip
_BUSY_TEXT = b"too many metrics connections\n"
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_BUSY_TEXT), _BUSY_TEXT)
)


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class MetricsListener:
    """Serves ``path`` on ``host``:``port`` (0: a free port, ``port`` says which once started)
    through ``respond``; ``reuse_port`` lets the workers of a server share the port; ``after``
    runs once each answer of a scrape is sent (work for the next scrape, off this one's time)."""

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        respond: Respond,
        *,
        reuse_port: bool = False,
        after: Callable[[], None] | None = None,
    ) -> None:
        self.host, self.port, self.path = host, port, path
        self._respond = respond
        self._after = after
        self._reuse_port = reuse_port
        self._sock: socket.socket | None = None
        self._accepting: threading.Thread | None = None
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._open: dict[socket.socket, threading.Thread] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    @property
    def running(self) -> bool:
        return self._accepting is not None and self._accepting.is_alive()

    def start(self) -> None:
        """Bind and listen (``OSError`` when the port is taken), then accept on a thread."""
        if self.running:
            return
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self._reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.host, self.port))
            sock.listen(64)
            sock.settimeout(0.5)  # accept() wakes to see a stop even where close() does not
        except BaseException:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self._sock = sock
        self._stopping = threading.Event()
        self._accepting = threading.Thread(
            target=self._accept, args=(sock, self._stopping), name="app_metrics-listener",
            daemon=True,
        )  # fmt: skip
        self._accepting.start()
        log.info("metrics listener on %s:%d%s", self.host, self.port, self.path)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop accepting, end every open connection, join the threads (bounded)."""
        self._stopping.set()
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes accept() at once on Linux
            sock.close()
        with self._lock:
            open_now = dict(self._open)
        for conn in open_now:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        deadline = monotonic() + timeout
        for thread in [t for t in (self._accepting, *open_now.values()) if t is not None]:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - monotonic()))
        self._accepting = None

    def _accept(self, sock: socket.socket, stopping: threading.Event) -> None:
        while not stopping.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by stop()
            if not self._slots.acquire(blocking=False):
                with contextlib.suppress(OSError):
                    conn.setblocking(False)  # never held up here: what fits, what arrived
                    conn.send(_BUSY)
                    _close_gently(conn, 0.0)
                conn.close()
                continue
            thread = threading.Thread(
                target=self._serve, args=(conn,), name="app_metrics-scrape", daemon=True
            )
            with self._lock:
                self._open[conn] = thread
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        scraped = False  # a scrape answered and its after-work not yet done
        try:
            conn.settimeout(None)  # blocking: the kernel times it out (``_timeout``)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            buffered = b""
            for served in range(MAX_REQUESTS):
                idle = KEEP_ALIVE if served else HEAD_TIMEOUT
                head, buffered = _read_head(conn, buffered, idle)
                if head is None:
                    return  # closed, or idle too long, before a request began
                keep, scraped = self._answer(conn, head, last=served + 1 == MAX_REQUESTS)
                if not keep or self._stopping.is_set():
                    return
                if scraped:  # kept alive: before waiting for the next request
                    self._after_answer()
                    scraped = False
        except _Refused as refused:
            with contextlib.suppress(OSError):
                _send(conn, refused.status, [], f"{refused}\n".encode(), keep=False)
                _close_gently(conn, 1.0)
        except OSError:
            pass  # the client left, or stop() ended the connection
        finally:
            with self._lock:
                self._open.pop(conn, None)
            with contextlib.suppress(OSError):
                conn.setblocking(False)
                _close_gently(conn, 0.0)  # a body left unread, say
            conn.close()
            if scraped:
                self._after_answer()  # once the client has it all, connection closed
            self._slots.release()

    def _after_answer(self) -> None:
        if self._after is not None:
            try:
                self._after()
            except Exception:
                log.exception("the metrics listener's after-answer work failed")

    def _answer(self, conn: socket.socket, head: bytes, last: bool) -> tuple[bool, bool]:
        """Answer one request; whether the connection may serve another, and whether the
        answer was a scrape's (200)."""
        method, target, version, headers = _parse(head)
        keep = version == "HTTP/1.1" and b"close" not in headers.get(b"connection", b"").lower()
        keep = keep and not last
        if headers.get(b"content-length", b"0").strip() != b"0" or b"transfer-encoding" in headers:
            keep = False  # a body: never read, so the connection cannot go on
        path, _, query = target.partition("?")
        if path != self.path:
            status, extra, body = 404, [], f"only {self.path} is served here\n".encode()
        elif method not in ("GET", "HEAD"):
            status, extra, body = 405, [(b"allow", b"GET, HEAD")], b"method not allowed\n"
        else:
            try:
                status, extra, body = self._respond(method, headers, query)
            except Exception:
                log.exception("the metrics listener failed to answer")
                status, extra, body = 500, [], b"internal error\n"
        _send(conn, status, extra, body, keep, head_only=method == "HEAD")
        return keep, status == 200


def _close_gently(conn: socket.socket, wait: float) -> None:
    """Read what the client sent (at most 64 KiB, ``wait`` s) after our last byte, so that
    closing does not reset the connection (unread data would) before it has the answer."""
    conn.shutdown(socket.SHUT_WR)
    if wait:
        conn.settimeout(wait)
    for _ in range(16):
        try:
            if not conn.recv(4096):
                return
        except (BlockingIOError, TimeoutError):
            return


def _read_head(conn: socket.socket, buffered: bytes, idle: float) -> tuple[bytes | None, bytes]:
    """The next request head (without its blank line) and the bytes after it; None when
    the connection closed or stayed idle for ``idle`` seconds before a request began."""
    deadline = monotonic() + idle
    data = buffered
    while True:
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            if end > MAX_HEAD:
                raise _Refused(431, f"the request head is over {MAX_HEAD} bytes")
            return data[:end], data[end + 4 :]
        if len(data) > MAX_HEAD:
            raise _Refused(431, f"the request head is over {MAX_HEAD} bytes")
        remaining = deadline - monotonic()
        if remaining <= 0:
            if data.strip():
                raise _Refused(408, f"the request head took over {HEAD_TIMEOUT:g} s")
            return None, b""
        _timeout(conn, socket.SO_RCVTIMEO, remaining)
        try:
            chunk = conn.recv(4096)
        except BlockingIOError:  # SO_RCVTIMEO ran out
            continue  # the deadline check above decides
        if not chunk:
            return None, b""
        if not data.strip():  # the request begins: it has HEAD_TIMEOUT from here
            deadline = monotonic() + HEAD_TIMEOUT
        data += chunk


def _timeout(conn: socket.socket, option: int, seconds: float) -> None:
    """The kernel's own timeout for a blocking socket's receives or sends (``BlockingIOError``
    when it runs out). Python's ``settimeout`` would cost two GIL hand-overs per call (a poll
    before each receive or send, and the ``settimeout`` itself), each up to the switch
    interval (5 ms) while a saturated event loop holds the GIL; ``setsockopt`` keeps it."""
    whole, micro = divmod(max(round(seconds * 1e6), 1000), 1_000_000)  # 0 would be none
    conn.setsockopt(socket.SOL_SOCKET, option, struct.pack("ll", whole, micro))


def _parse(head: bytes) -> tuple[str, str, str, Headers]:
    lines = head.lstrip(b"\r\n").split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[1].startswith(b"/"):
        raise _Refused(400, "a request line is METHOD /path HTTP/1.1")
    method, target, version = (p.decode("latin-1") for p in parts)
    if not version.startswith("HTTP/"):
        raise _Refused(400, "a request line is METHOD /path HTTP/1.1")
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise _Refused(505, "HTTP/1.0 and HTTP/1.1 only")
    headers: Headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
            raise _Refused(400, "a malformed header line")
        key, value = name.lower(), value.strip()
        headers[key] = headers[key] + b"," + value if key in headers else value
    return method, target, version, headers


def _send(
    conn: socket.socket,
    status: int,
    extra: list[tuple[bytes, bytes]],
    body: bytes,
    keep: bool,
    head_only: bool = False,
) -> None:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}".encode()]
    if not any(k == b"content-type" for k, _ in extra):
        extra = [*extra, (b"content-type", b"text/plain; charset=utf-8")]
    lines += [k + b": " + v for k, v in extra]
    lines.append(b"content-length: %d" % len(body))
    lines.append(b"connection: keep-alive" if keep else b"connection: close")
    _timeout(conn, socket.SO_SNDTIMEO, WRITE_TIMEOUT)
    conn.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + (b"" if head_only else body))
