"""Log in (the API token opens a session for a user) and log out (the session ends itself)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from sqlalchemy import select

from ..auth import SessionDep, require_api_token
from ..db import User
from ..errors import ApiError
from ..schemas import Login, SessionOut
from ..services import ServicesDep

router = APIRouter(prefix="/sessions", tags=["sessions"])


@router.post("", status_code=201, dependencies=[Depends(require_api_token)])
async def login(body: Login, svc: ServicesDep) -> SessionOut:
    async with svc.db.session() as session:
        user_id = await session.scalar(select(User.id).where(User.email == body.email))
    if user_id is None:
        raise ApiError(404, "user_not_found", "no user with this email")
    token = await svc.sessions.create(user_id)
    return SessionOut(token=token, user_id=user_id, expires_in_seconds=svc.sessions.ttl_seconds)


@router.delete("/current", status_code=204)
async def logout(current: SessionDep, svc: ServicesDep) -> Response:
    await svc.sessions.delete(current.token)
    return Response(status_code=204)
