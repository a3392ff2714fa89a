"""Routes for tests of the monitoring, only with ``ASSISTANT_DEBUG_ROUTES=true`` (dev only:
stage and prod refuse to start with it, ``config.py``) and the API token.

``POST /debug/block?seconds=N`` (0 < N <= 10; 422 beyond) calls ``time.sleep`` in an async
route, the most common FastAPI performance bug: the event loop runs nothing else meanwhile,
so every other request waits, and ``event_loop_stall_seconds`` shows it on the metrics
listener, which keeps answering.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from ..auth import require_api_token

MAX_BLOCK_SECONDS = 10.0

router = APIRouter(prefix="/debug", tags=["debug"], dependencies=[Depends(require_api_token)])


@router.post("/block")
async def block(
    seconds: Annotated[float, Query(gt=0, le=MAX_BLOCK_SECONDS)] = 5.0,
) -> dict[str, float]:
    time.sleep(seconds)  # on purpose: blocks the event loop
    return {"blocked_seconds": seconds}
