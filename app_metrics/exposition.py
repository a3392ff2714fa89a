"""The ``/metrics`` endpoint: bearer token, content negotiation, gzip, ``name[]``.

Scrape-time values are refreshed on the event loop (each with its own timeout),
then the registry is rendered in a worker thread so a large exposition never
blocks request handling.
"""

from __future__ import annotations

import gzip
import hmac
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

import anyio.to_thread

from .http import Receive, Scope, Send

_GZIP_MIN_BYTES = 1024


class MetricsEndpoint:
    """ASGI app serving one registry, optionally behind a bearer token."""

    def __init__(
        self,
        render: Callable[[str, list[str] | None], tuple[bytes, str]],
        refresh: Callable[[], Awaitable[None]],
        token: str | None = None,
    ) -> None:
        self._render = render
        self._refresh = refresh
        self._expected = f"Bearer {token}".encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            await _respond(send, 405, b"method not allowed\n", [(b"allow", b"GET, HEAD")])
            return
        headers = _headers(scope)
        if self._expected is not None and not hmac.compare_digest(
            headers.get(b"authorization", b""), self._expected
        ):
            await _respond(
                send,
                401,
                b"a bearer token is required for /metrics\n",
                [(b"www-authenticate", b'Bearer realm="metrics"')],
            )
            return
        await self._refresh()
        accept = headers.get(b"accept", b"").decode("latin-1")
        names = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("name[]")
        body, content_type = await anyio.to_thread.run_sync(self._render, accept, names)
        extra = [(b"content-type", content_type.encode())]
        if len(body) >= _GZIP_MIN_BYTES and _accepts_gzip(headers.get(b"accept-encoding", b"")):
            body = await anyio.to_thread.run_sync(gzip.compress, body, 6)
            extra.append((b"content-encoding", b"gzip"))
        extra.append((b"vary", b"accept, accept-encoding"))
        await _respond(send, 200, b"" if scope["method"] == "HEAD" else body, extra, len(body))


def _headers(scope: Scope) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    for name, value in scope.get("headers", ()):
        key = name.lower()
        out[key] = out[key] + b"," + value if key in out else value
    return out


def _accepts_gzip(header: bytes) -> bool:
    for part in header.split(b","):
        coding, _, params = part.strip().partition(b";")
        if coding.strip().lower() in (b"gzip", b"*"):
            return params.replace(b" ", b"") not in (b"q=0", b"q=0.0", b"q=0.00", b"q=0.000")
    return False


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    length: int | None = None,
) -> None:
    if not any(k == b"content-type" for k, _ in headers):
        headers = [*headers, (b"content-type", b"text/plain; charset=utf-8")]
    size = len(body) if length is None else length
    headers = [*headers, (b"content-length", str(size).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
