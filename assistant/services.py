"""What the routes use, built once per app and reached through ``Depends(services)``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends, Request

import app_metrics

from .config import Settings
from .db import Database
from .sessions import SessionStore
from .sms import SmsService
from .tasks import TaskService
from .verification import CodeSender, PhoneVerifications
from .worker import Worker


@dataclass(frozen=True)
class Services:
    settings: Settings
    db: Database
    redis: aioredis.Redis
    sessions: SessionStore
    verifications: PhoneVerifications
    send_code: CodeSender
    metrics: app_metrics.Metrics
    sms: SmsService
    tasks: TaskService
    worker: Worker  # the delivery loops (SMS and task queues)


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(services)]
