"""Users: register, read, and verify a phone number with a code."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..auth import SessionDep, require_api_token
from ..db import User
from ..errors import ApiError
from ..schemas import CodeAnswer, CodeRequest, CodeSent, NewUser, UserId, UserOut
from ..services import ServicesDep
from ..verification import Limited, Outcome

router = APIRouter(prefix="/users", tags=["users"])
api = [Depends(require_api_token)]


async def _user(session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise ApiError(404, "user_not_found", f"no user with id {user_id}")
    return user


@router.post("", status_code=201, dependencies=api)
async def register(body: NewUser, svc: ServicesDep) -> UserOut:
    async with svc.db.session() as session:
        user = User(email=body.email, name=body.name, phone=body.phone, phone_verified=False)
        session.add(user)
        try:
            await session.commit()
        except IntegrityError:
            raise ApiError(409, "email_taken", "a user with this email already exists") from None
    svc.metrics.users.registered()
    return UserOut.model_validate(user)


@router.get("/me")
async def me(current: SessionDep, svc: ServicesDep) -> UserOut:
    async with svc.db.session() as session:
        return UserOut.model_validate(await _user(session, current.user_id))


@router.get("/{user_id}", dependencies=api)
async def read(user_id: UserId, svc: ServicesDep) -> UserOut:
    async with svc.db.session() as session:
        return UserOut.model_validate(await _user(session, user_id))


@router.post("/{user_id}/phone/verification", status_code=202, dependencies=api)
async def send_code(user_id: UserId, body: CodeRequest, svc: ServicesDep) -> CodeSent:
    async with svc.db.session() as session:
        user = await _user(session, user_id)
    phone = body.phone or user.phone
    if phone is None:
        raise ApiError(422, "phone_missing", "no phone number given and none on file")
    try:
        code = await svc.verifications.issue(user_id, phone)
    except Limited as refused:
        svc.metrics.users.phone_verification_refused(refused.limit)  # type: ignore[arg-type]
        raise _too_many(refused.limit, refused.retry_after) from None
    await svc.send_code(user_id, phone, code)
    svc.metrics.users.phone_verification("sent")
    return CodeSent(expires_in_seconds=svc.verifications.ttl_seconds)


@router.post("/{user_id}/phone/verification/confirm", dependencies=api)
async def confirm_code(user_id: UserId, body: CodeAnswer, svc: ServicesDep) -> UserOut:
    async with svc.db.session() as session:
        user = await _user(session, user_id)
        check = await svc.verifications.check(user_id, body.code)
        if check.outcome is Outcome.VERIFIED:
            user.phone, user.phone_verified = check.phone, True
            await session.commit()
    users = svc.metrics.users
    match check.outcome:
        case Outcome.VERIFIED:
            if await svc.verifications.consume(user_id):
                users.phone_verification("verified")
            return UserOut.model_validate(user)
        case Outcome.FAILED:
            users.phone_verification("failed")
            raise ApiError(
                400,
                "code_incorrect",
                f"the code is incorrect; {check.attempts_left} attempt(s) left",
            )
        case Outcome.EXHAUSTED:
            users.phone_verification("failed")
            raise ApiError(
                400,
                "code_incorrect",
                "the code is incorrect and no attempts are left: request a new code in "
                f"{check.retry_after} s",
                {"Retry-After": str(check.retry_after)},
            )
        case Outcome.LIMITED:
            users.phone_verification_refused("attempts")
            raise _too_many("attempts", check.retry_after)
        case Outcome.EXPIRED:
            users.phone_verification("expired")
            raise ApiError(410, "code_expired", "the code has expired: request a new one")
        case _:
            raise ApiError(
                409, "no_code_pending", "no verification code is pending: request one first"
            )


_REFUSED = {
    "attempts": ("too_many_attempts", "too many wrong codes for this user"),
    "phone": ("too_many_codes", "too many codes sent to this phone number"),
    "user": ("too_many_codes", "too many codes sent for this user"),
    "client": ("too_many_codes", "too many codes sent by this client"),
}


def _too_many(limit: str, retry_after: int) -> ApiError:
    """429 for a verification limit, with when to try again."""
    error, what = _REFUSED[limit]
    message = f"{what}: try again in {retry_after} s"
    return ApiError(429, error, message, {"Retry-After": str(retry_after)})
