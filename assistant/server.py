"""``serve(app, settings)``: uvicorn with limits on what clients can make it hold.

- request heads: at most ``max_header_bytes`` (431 and closed beyond; h11's
  ``max_incomplete_event_size`` alone bounds only a head still incomplete), complete within
  ``header_timeout_seconds`` of the connection's start or of the request's first byte (408
  and closed; uvicorn has no such timeout: a client that sends nothing, or a header a byte
  at a time, would hold its connection for ever);
- connections: at most ``max_connections`` (uvicorn's ``limit_concurrency``: 503 beyond);
  an idle kept-alive one is closed after ``keep_alive_seconds``;
- bodies: ``gate.BodyGate``, in the app (so any server gets it).

h11 is used whatever else is installed (httptools has no head-size setting); WebSocket
upgrades are off (the API has none) and no ``Server`` header is sent.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .config import Settings

_TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n"
    b"connection: close\r\n\r\n"
)


class LimitedProtocol(H11Protocol):
    """uvicorn's h11 protocol, plus a size limit and a deadline for each request head.

    The deadline starts with the connection and again with the first byte of each later
    request (uvicorn's keep-alive timeout covers the wait for that byte); it is cancelled
    once h11 has parsed the head.
    """

    head_timeout = 10.0
    max_head_bytes = 8 * 1024
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and self._head_too_large(data):
            self._cancel_head_timer()
            self.transport.write(_TOO_LARGE)
            self.transport.close()
            return
        super().data_received(data)
        self._watch_head()

    def _head_too_large(self, data: bytes) -> bool:
        buffered = self.conn.trailing_data[0] + data  # h11 bounds what it buffers
        end = buffered.find(b"\r\n\r\n")
        return (end if end >= 0 else len(buffered)) > self.max_head_bytes

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _watch_head(self) -> None:
        waiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing()
        if not waiting:
            self._cancel_head_timer()
        elif self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.write(_TIMED_OUT)
            self.transport.close()


def protocol(settings: Settings) -> type[LimitedProtocol]:
    """The protocol class with these limits (uvicorn instantiates it per connection)."""
    limits = {
        "head_timeout": settings.header_timeout_seconds,
        "max_head_bytes": settings.max_header_bytes,
    }
    return type("LimitedProtocol", (LimitedProtocol,), limits)


def options(settings: Settings) -> dict[str, Any]:
    """uvicorn's settings for ``settings``' address and limits."""
    return {
        "host": settings.host,
        "port": settings.port,
        "http": protocol(settings),
        "ws": "none",
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "limit_concurrency": settings.max_connections,
        "timeout_keep_alive": settings.keep_alive_seconds,
        "server_header": False,
    }


def serve(app: Any, settings: Settings) -> None:
    uvicorn.run(app, **options(settings))
