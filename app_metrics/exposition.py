"""The ``/metrics`` endpoint: bearer token, content negotiation, gzip, ``name[]``.

The token is ``Authorization: Bearer <token>`` with the scheme in any case (RFC 7235), compared
in constant time. gzip is used when ``Accept-Encoding`` gives it (or ``*``, when gzip is not
named) a quality above zero, in any spelling of the ``q`` parameter (RFC 9110).

Scrape-time values are refreshed on the event loop (each with its own timeout),
then the registry is rendered in a worker thread so a large exposition never
blocks request handling. The metrics listener (``listener.py``) answers through the same
``refusal`` and ``body``, from its own threads.
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
        self._token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        refused = self.refusal(scope["method"], headers.get(b"authorization"))
        if refused is not None:
            await _respond(send, *refused)
            return
        await self._refresh()
        query = scope.get("query_string", b"").decode("latin-1")
        body, extra = await anyio.to_thread.run_sync(self.body, headers, query)
        await _respond(send, 200, b"" if scope["method"] == "HEAD" else body, extra, len(body))

    def refusal(
        self, method: str, authorization: bytes | None
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]] | None:
        """The answer to a request refused for its method or its token, or None."""
        if method not in ("GET", "HEAD"):
            return 405, b"method not allowed\n", [(b"allow", b"GET, HEAD")]
        if self._token is not None and not self.authorized(authorization):
            return (
                401,
                b"a bearer token is required for /metrics\n",
                [(b"www-authenticate", b'Bearer realm="metrics"')],
            )
        return None

    def body(
        self, headers: dict[bytes, bytes], query: str
    ) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        """The exposition for these request headers (lower-case names) and query, and its
        headers: rendered, gzipped when asked for (blocking: run it off the event loop)."""
        accept = headers.get(b"accept", b"").decode("latin-1")
        body, content_type = self._render(accept, parse_qs(query).get("name[]"))
        extra = [(b"content-type", content_type.encode())]
        if len(body) >= _GZIP_MIN_BYTES and _accepts_gzip(headers.get(b"accept-encoding", b"")):
            body = gzip.compress(body, 6)
            extra.append((b"content-encoding", b"gzip"))
        extra.append((b"vary", b"accept, accept-encoding"))
        return body, extra

    def authorized(self, authorization: bytes | None) -> bool:
        """Whether an ``Authorization`` value carries this endpoint's token (never when it
        has none)."""
        if self._token is None or authorization is None:
            return False
        scheme, _, credentials = authorization.strip().partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self._token)


def _headers(scope: Scope) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    for name, value in scope.get("headers", ()):
        key = name.lower()
        out[key] = out[key] + b"," + value if key in out else value
    return out


def _accepts_gzip(header: bytes) -> bool:
    qualities: dict[bytes, float] = {}
    for part in header.split(b","):
        coding, *params = (item.strip() for item in part.split(b";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition(b"=")
            if name.strip().lower() == b"q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 0.0  # unreadable: not an acceptance
        if coding:
            qualities[coding.lower()] = quality
    return qualities.get(b"gzip", qualities.get(b"*", 0.0)) > 0


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
