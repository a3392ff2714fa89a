"""``BodyGate``: pure ASGI middleware that decides about a request body before it is read.

FastAPI reads and parses a route's body before it runs the route's dependencies, so the API
token dependency alone would let anyone make the service read, buffer and parse any body.
The gate wraps ``receive``; the first time the app asks for the body, and before a byte of
it is read:

1. the caller must hold the API token (401 otherwise). Every route that takes a body takes
   the API token; the session routes take no body (``auth.py``);
2. a declared ``Content-Length`` over ``max_bytes`` is refused (413);

then the bytes that arrive are counted (a chunked body has no length to check up front: 413
as soon as it crosses ``max_bytes``), and the whole body must arrive within ``timeout``
seconds of the first read (408). The refusals are ``ApiError``s, which FastAPI passes
through its body parsing to the app's error handlers: the usual JSON error shape.

A response that starts before the body was read to its end carries ``Connection: close``:
the server closes the connection instead of reading (and discarding) the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from .errors import ApiError

Scope = dict[str, Any]
Message = dict[str, Any]
ASGIApp = Callable[..., Any]


class BodyGate:
    def __init__(
        self,
        app: ASGIApp,
        *,
        authorized: Callable[[str | None], bool],
        max_bytes: int,
        timeout: float,
    ) -> None:
        self.app = app
        self.authorized = authorized  # given the Authorization header's value
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])  # the server lower-cases names
        chunked = b"transfer-encoding" in headers
        declared = int(headers.get(b"content-length", b"0") or 0)  # the server checked it
        if not chunked and not declared:
            await self.app(scope, receive, send)  # no body
            return

        deadline: float | None = None
        received = 0
        complete = False

        async def gated_receive() -> Message:
            nonlocal deadline, received, complete
            if complete:
                return await receive()  # the app waits for a disconnect
            if deadline is None:
                authorization = headers.get(b"authorization", b"").decode("latin-1")
                if not self.authorized(authorization or None):
                    raise ApiError(
                        401,
                        "unauthorized",
                        "this route needs the API token: Authorization: Bearer <token>",
                        {"WWW-Authenticate": "Bearer"},
                    )
                if declared > self.max_bytes:
                    raise _too_large(self.max_bytes)
                deadline = asyncio.get_running_loop().time() + self.timeout
            try:
                async with asyncio.timeout_at(deadline):
                    message: Message = await receive()
            except TimeoutError:
                raise ApiError(
                    408, "request_timeout", f"the body did not arrive within {self.timeout:g} s"
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _too_large(self.max_bytes)
                complete = not message.get("more_body", False)
            else:
                complete = True  # http.disconnect
            return message

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not complete:
                message = {**message, "headers": [*message.get("headers", []), _CLOSE]}
            await send(message)

        await self.app(scope, gated_receive, closing_send)


_CLOSE = (b"connection", b"close")


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "body_too_large", f"the request body is over {limit} bytes")
