"""SMS: accept a message for a user (202, delivered by the worker), its status, per-user counts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, StringConstraints

from ..auth import require_api_token
from ..db import User
from ..errors import ApiError
from ..schemas import Payload, UserId
from ..services import ServicesDep

router = APIRouter(tags=["sms"], dependencies=[Depends(require_api_token)])

Body = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1600)]


class NewSms(Payload):
    user_id: Annotated[int, Field(ge=1, le=2**31 - 1)]
    body: Body


class SmsAccepted(BaseModel):
    id: str
    status: str = "queued"


class SmsCounts(BaseModel):
    user_id: int
    accepted: int
    delivered: int
    failed: int


async def _phone_of(svc: ServicesDep, user_id: int) -> str:
    async with svc.db.session() as session:
        user = await session.get(User, user_id)
    if user is None:
        raise ApiError(404, "user_not_found", f"no user with id {user_id}")
    if user.phone is None:
        raise ApiError(422, "phone_missing", "the user has no phone number on file")
    return user.phone


@router.post("/sms", status_code=202)
async def send(body: NewSms, svc: ServicesDep) -> SmsAccepted:
    phone = await _phone_of(svc, body.user_id)
    return SmsAccepted(id=await svc.sms.enqueue(phone, body.body, body.user_id))


@router.get("/sms/{sms_id}")
async def status(sms_id: str, svc: ServicesDep) -> dict[str, str]:
    record = await svc.sms.status(sms_id)
    if record is None:
        raise ApiError(404, "sms_not_found", f"no SMS with id {sms_id}")
    return record


@router.get("/users/{user_id}/sms")
async def counts(user_id: UserId, svc: ServicesDep) -> SmsCounts:
    async with svc.db.session() as session:
        if await session.get(User, user_id) is None:
            raise ApiError(404, "user_not_found", f"no user with id {user_id}")
    return SmsCounts(user_id=user_id, **await svc.sms.user_counts(user_id))
