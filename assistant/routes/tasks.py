"""Background jobs: enqueue one (202, run by the worker) and read its outcome."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from ..auth import require_api_token
from ..errors import ApiError
from ..schemas import Payload
from ..services import ServicesDep

router = APIRouter(prefix="/tasks", tags=["tasks"], dependencies=[Depends(require_api_token)])


class NewTask(Payload):
    type: Literal["send_reminder", "refresh_tokens", "cleanup_sessions"]
    queue: str | None = None  # default: the kind's usual queue
    user_id: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None  # send_reminder


class TaskAccepted(BaseModel):
    id: str
    queue: str
    status: str = "queued"


@router.post("", status_code=202)
async def enqueue(body: NewTask, svc: ServicesDep) -> TaskAccepted:
    tasks = svc.tasks
    queue = body.queue or tasks.default_queue(body.type)
    if queue not in tasks.queues:
        raise ApiError(
            422, "unknown_queue", f"no queue {queue!r}; the queues are {', '.join(tasks.queues)}"
        )
    params: dict[str, Any] = {} if body.user_id is None else {"user_id": body.user_id}
    return TaskAccepted(id=await tasks.enqueue(body.type, queue, params), queue=queue)


@router.get("/{task_id}")
async def status(task_id: str, svc: ServicesDep) -> dict[str, str]:
    record = await svc.tasks.status(task_id)
    if record is None:
        raise ApiError(404, "task_not_found", f"no task with id {task_id}")
    return record
