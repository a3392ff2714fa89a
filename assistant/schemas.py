"""Request and response bodies; invalid input fails with a message that says what is wanted."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from fastapi import Path
from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints
from pydantic_core import PydanticCustomError


def _matching(pattern: str, message: str) -> AfterValidator:
    """A check that the whole value matches ``pattern``, failing with ``message``."""
    regex = re.compile(pattern)

    def check(value: str) -> str:
        if not regex.fullmatch(value):
            raise PydanticCustomError("invalid_format", message)
        return value

    return AfterValidator(check)


Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_lower=True, max_length=320),
    _matching(r"[^@\s]+@[^@\s]+\.[^@\s]+", "not a valid email address"),
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Phone = Annotated[
    str,
    StringConstraints(strip_whitespace=True),
    _matching(r"\+[1-9][0-9]{6,14}", "not a phone number in E.164 form, such as +14155550123"),
]
Code = Annotated[
    str, StringConstraints(strip_whitespace=True), _matching(r"[0-9]{6}", "the code has 6 digits")
]


# users.id is a PostgreSQL integer: larger ids are invalid input, not a server error
UserId = Annotated[int, Path(ge=1, le=2**31 - 1)]


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewUser(Payload):
    email: Email
    name: Name
    phone: Phone | None = None


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str
    phone: str | None
    phone_verified: bool
    created_at: datetime


class CodeRequest(Payload):
    phone: Phone | None = None  # default: the phone on file


class CodeSent(BaseModel):
    status: str = "sent"
    expires_in_seconds: float


class CodeAnswer(Payload):
    code: Code


class Login(Payload):
    email: Email


class SessionOut(BaseModel):
    token: str
    token_type: str = "bearer"
    user_id: int
    expires_in_seconds: float
