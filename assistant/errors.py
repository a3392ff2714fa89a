"""One error shape for every failure: ``{"error": <code>, "message": <what to do>}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

log = logging.getLogger("assistant")

RETRY_AFTER_SECONDS = 5


class DependencyUnavailable(Exception):
    """PostgreSQL or Redis cannot be reached; the request gets a 503."""

    def __init__(self, dependency: str, cause: BaseException) -> None:
        super().__init__(f"{dependency} unavailable: {type(cause).__name__}: {cause}")
        self.dependency = dependency


class ApiError(HTTPException):
    """An HTTP error with a machine-readable code next to its message."""

    def __init__(
        self, status_code: int, error: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status_code, message, headers)
        self.error = error


def error_response(
    status: int, error: str, message: str, headers: dict[str, str] | None = None, **extra: object
) -> JSONResponse:
    return JSONResponse({"error": error, "message": message, **extra}, status, headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    error = getattr(exc, "error", None) or _CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, error, str(exc.detail), exc.headers)


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """422 naming each invalid field, without echoing the submitted values back."""
    assert isinstance(exc, RequestValidationError)
    fields = [{"field": _field(err), "message": err["msg"]} for err in exc.errors()]
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    return error_response(422, "invalid_request", f"invalid request: {summary}", fields=fields)


def _field(error: Any) -> str:
    """``email`` for ("body", "email"), ``body`` for a body that is not valid JSON."""
    where = [str(part) for part in error["loc"][1:]]
    return "body" if error["type"] == "json_invalid" or not where else ".".join(where)


async def unavailable(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DependencyUnavailable)
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    return error_response(
        503,
        f"{exc.dependency}_unavailable",
        f"{exc.dependency} is unavailable; try again shortly",
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    # Starlette logs the traceback and re-raises after this answer
    return error_response(500, "internal_error", "the server failed; the error is logged")


_CODES = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 409: "conflict"}


def install(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(DependencyUnavailable, unavailable)
    app.add_exception_handler(Exception, _internal)
