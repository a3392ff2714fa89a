"""OAuth integrations of a user: connect, refresh, revoke, list (API token)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

from ..auth import require_api_token
from ..oauth import OAuthService, Provider
from ..schemas import Payload, UserId

router = APIRouter(prefix="/users", tags=["oauth"], dependencies=[Depends(require_api_token)])

_SCOPE = re.compile(r"[A-Za-z0-9._:/+-]+")


def _scope(value: str) -> str:
    if not _SCOPE.fullmatch(value):
        raise PydanticCustomError(
            "invalid_scope", "a scope is letters, digits and . _ : / + - (no spaces)"
        )
    return value


Scope = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_scope),
]


class NewIntegration(Payload):
    provider: Provider
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=20)] | None = None


class IntegrationOut(BaseModel):
    """An integration as the API shows it: never a token, nor a token hash."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    user_id: int
    provider: str
    status: str
    scopes: list[str]
    access_token_expires_at: datetime | None
    refresh_count: int
    connected_at: datetime
    refreshed_at: datetime | None
    revoked_at: datetime | None


def _oauth(request: Request) -> OAuthService:
    return request.app.state.oauth  # type: ignore[no-any-return]


OAuthDep = Annotated[OAuthService, Depends(_oauth)]


@router.post("/{user_id}/integrations", status_code=201)
async def connect(user_id: UserId, body: NewIntegration, oauth: OAuthDep) -> IntegrationOut:
    integration = await oauth.connect(user_id, body.provider.value, body.scopes)
    return IntegrationOut.model_validate(integration)


@router.get("/{user_id}/integrations")
async def list_integrations(user_id: UserId, oauth: OAuthDep) -> list[IntegrationOut]:
    return [IntegrationOut.model_validate(row) for row in await oauth.list(user_id)]


@router.post("/{user_id}/integrations/{provider}/refresh")
async def refresh(user_id: UserId, provider: Provider, oauth: OAuthDep) -> IntegrationOut:
    return IntegrationOut.model_validate(await oauth.refresh(user_id, provider.value))


@router.delete("/{user_id}/integrations/{provider}", status_code=204)
async def revoke(user_id: UserId, provider: Provider, oauth: OAuthDep) -> Response:
    await oauth.revoke(user_id, provider.value)
    return Response(status_code=204)
