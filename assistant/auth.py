"""Bearer tokens for the API routes (``/metrics`` has its own; the ``/health`` status needs none).

Two kinds, one header:

* the **API token** (``ASSISTANT_API_TOKEN``) identifies the trusted client, the
  assistant's front end, which authenticates people itself; it may register users,
  read them, log them in and run phone verification;
* a **session token**, returned by ``POST /sessions`` (login), speaks for one user:
  ``GET /users/me`` and ``DELETE /sessions/current`` (logout) take it.

A missing or wrong token is a 401 with ``WWW-Authenticate: Bearer``. Every route that takes
a body takes the API token (the session routes take none): ``gate.BodyGate`` checks it with
``holds_api_token`` before a byte of the body is read, so an anonymous caller can neither make
the service read a body nor learn anything about the payloads.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .errors import ApiError
from .services import ServicesDep

_bearer = HTTPBearer(auto_error=False)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})


def holds_api_token(authorization: str | None, token: str) -> bool:
    """Whether an ``Authorization`` value is ``Bearer <token>`` (the scheme in any case)."""
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        credentials.strip().encode(), token.encode()
    )


def require_api_token(credentials: Credentials, svc: ServicesDep) -> None:
    expected = svc.settings.api_token.encode()
    if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), expected):
        raise _unauthorized("this route needs the API token: Authorization: Bearer <token>")


@dataclass(frozen=True)
class Session:
    token: str
    user_id: int


async def current_session(credentials: Credentials, svc: ServicesDep) -> Session:
    if credentials is None:
        raise _unauthorized("this route needs a session token: log in with POST /sessions")
    user_id = await svc.sessions.user_id(credentials.credentials)
    if user_id is None:
        raise _unauthorized("the session is unknown or has expired: log in again")
    return Session(credentials.credentials, user_id)


SessionDep = Annotated[Session, Depends(current_session)]
