"""The specification's health endpoints, as JSON, without the API token.

The checks (a real ``SELECT 1``, a ``PING``) are shared through ``metrics.health.shared``:
each runs at most once per ``health_interval_seconds`` whatever the request rate (one run
that concurrent requests await), its result lands in the bounded history, and the scrapes
serve the same one. Anyone gets the status: ``/database`` and ``/overall`` answer 200
healthy, 503 unhealthy, for load balancers. The details (durations, times, errors, which
name internal addresses, the pool, the history) are for whoever holds the metrics token
(``Authorization: Bearer <metrics token>``, the scraper's); a failed check is logged.
"""

from __future__ import annotations

import asyncio
import math
import statistics
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from app_metrics import HealthResult

from ..errors import ApiError
from ..services import Services, ServicesDep

router = APIRouter(prefix="/health", tags=["health"])


def _details(request: Request, svc: ServicesDep) -> bool:
    """Whether the caller holds the metrics token (never when /metrics has none)."""
    return svc.metrics.holds_token(request.headers.get("authorization"))


Details = Annotated[bool, Depends(_details)]


def _require_details(details: Details) -> None:
    if not details:
        raise ApiError(
            401,
            "unauthorized",
            "the health details need the metrics token: Authorization: Bearer <token>",
            {"WWW-Authenticate": 'Bearer realm="metrics"'},
        )


detailed = [Depends(_require_details)]


async def _run(svc: Services, name: str) -> HealthResult:
    return await svc.metrics.health.shared(name)


def _status(result: HealthResult) -> dict[str, Any]:
    return {"check": result.check, "status": "healthy" if result.healthy else "unhealthy"}


def _result(result: HealthResult) -> dict[str, Any]:
    return {
        **_status(result),
        "duration_seconds": round(result.duration_seconds, 6),
        "checked_at": datetime.fromtimestamp(result.checked_at, UTC).isoformat(),
        "error": result.error,
    }


def _answer(healthy: bool, body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, 200 if healthy else 503)


def _pool(svc: Services) -> dict[str, Any]:
    details: dict[str, Any] = svc.db.pool_details()
    details["utilization"] = round(details["checked_out"] / details["capacity"], 4)
    return details


@router.get("/database")
async def database(svc: ServicesDep, details: Details) -> JSONResponse:
    result = await _run(svc, "database")
    if not details:
        return _answer(result.healthy, _status(result))
    body = _result(result)
    body["response_time_seconds"] = body["duration_seconds"] if result.healthy else None
    return _answer(result.healthy, body)


@router.get("/database/pool", dependencies=detailed)
async def database_pool(svc: ServicesDep) -> dict[str, Any]:
    return _pool(svc)


@router.get("/database/performance", dependencies=detailed)
async def database_performance(svc: ServicesDep) -> dict[str, Any]:
    """Response times of the recent database checks (the latest shared one included)."""
    await _run(svc, "database")
    recent = [r for r in svc.metrics.health.history if r.check == "database"]
    return {
        "samples": len(recent),
        "healthy_ratio": round(sum(r.healthy for r in recent) / len(recent), 4),
        "response_time_seconds": _timing([r.duration_seconds for r in recent if r.healthy]),
        "latest": _result(recent[-1]),
        "pool": _pool(svc),
    }


def _timing(durations: list[float]) -> dict[str, float] | None:
    """Last, mean, p95 (nearest rank) and max of ``durations``, given oldest first."""
    if not durations:
        return None
    ordered = sorted(durations)
    p95 = ordered[math.ceil(0.95 * len(ordered)) - 1]
    stats = (durations[-1], statistics.fmean(ordered), p95, ordered[-1])
    return dict(zip(("last", "mean", "p95", "max"), (round(x, 6) for x in stats), strict=True))


@router.get("/overall")
async def overall(svc: ServicesDep, details: Details) -> JSONResponse:
    results = await asyncio.gather(*(_run(svc, name) for name in svc.metrics.health.names()))
    healthy = all(r.healthy for r in results)
    show = _result if details else _status
    body = {
        "status": "healthy" if healthy else "unhealthy",
        "checks": {r.check: show(r) for r in results},
    }
    return _answer(healthy, body)


@router.get("/history", dependencies=detailed)
async def history(
    svc: ServicesDep,
    check: str | None = None,
    limit: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    """Recent check results, oldest first; the history keeps the last ``max_entries``."""
    kept = svc.metrics.health.history
    results = [_result(r) for r in kept if check is None or r.check == check]
    return {"max_entries": kept.maxlen, "results": results[-limit:] if limit else results}
