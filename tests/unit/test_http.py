"""Statuses the client really saw, and latency that stops at the last body byte."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import BackgroundTasks, FastAPI
from prometheus_client import CollectorRegistry
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.types import Receive, Scope, Send

import app_metrics

from .driver import call, counted, isolated, request, scrape, value


def test_unhandled_exception_is_counted_as_the_500_the_client_got() -> None:
    app = FastAPI()

    @app.get("/boom/{n}")
    async def boom(n: int) -> None:
        raise RuntimeError("bug")

    isolated(app)
    with pytest.raises(RuntimeError):
        call(app, "/boom/1")  # ServerErrorMiddleware sends the 500, then re-raises
    assert counted(app, "/boom/{n}", "500") == 1


def test_custom_500_handler_status_is_counted() -> None:
    app = FastAPI()

    @app.exception_handler(Exception)
    async def handler(request: object, exc: Exception) -> PlainTextResponse:
        return PlainTextResponse("sorry", status_code=503)

    @app.get("/fragile")
    async def fragile() -> None:
        raise ValueError("x")

    isolated(app)
    with pytest.raises(ValueError, match="x"):
        call(app, "/fragile")
    assert counted(app, "/fragile", "503") == 1


class RateLimit:
    """A middleware answering 429 to every third request (before routing)."""

    def __init__(self, app: object) -> None:
        self.app = app
        self.seen = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.seen += 1
        if scope["type"] == "http" and self.seen % 3 == 0:
            await PlainTextResponse("slow down", status_code=429)(scope, receive, send)
            return
        await self.app(scope, receive, send)  # type: ignore[operator]


def test_statuses_from_other_middleware_are_counted_with_the_route() -> None:
    app = FastAPI(middleware=[Middleware(RateLimit)])

    @app.get("/users/{user_id}")
    async def user(user_id: int) -> int:
        return user_id

    isolated(app)
    statuses = [call(app, f"/users/{i}").status for i in range(6)]
    assert statuses.count(429) == 2
    assert counted(app, "/users/{user_id}", "429") == 2
    assert counted(app, "/users/{user_id}", "200") == 4


def test_validation_error_is_counted_as_422() -> None:
    app = FastAPI()

    @app.get("/users/{user_id}")
    async def user(user_id: int) -> int:
        return user_id

    isolated(app)
    assert call(app, "/users/not-a-number").status == 422
    assert counted(app, "/users/{user_id}", "422") == 1


def test_background_tasks_are_not_part_of_the_latency() -> None:
    app = FastAPI()

    @app.post("/signup")
    async def signup(tasks: BackgroundTasks) -> str:
        tasks.add_task(asyncio.sleep, 0.3)
        return "ok"

    isolated(app)
    assert call(app, "/signup", method="POST").status == 200
    text = scrape(app)
    assert (
        value(text, "http_request_duration_seconds_count", method="POST", endpoint="/signup") == 1
    )
    took = value(text, "http_request_duration_seconds_sum", method="POST", endpoint="/signup")
    assert took is not None and took < 0.1, took


def test_request_is_counted_when_the_response_ends_not_after_background_tasks() -> None:
    app = FastAPI()
    release = asyncio.Event()
    seen_during_task: list[float | None] = []

    async def task() -> None:
        seen_during_task.append(
            value(
                app_metrics_handle.render()[0].decode(),
                "http_requests_total",
                method="POST",
                endpoint="/signup",
                status="200",
            )
        )
        release.set()

    @app.post("/signup")
    async def signup(tasks: BackgroundTasks) -> str:
        tasks.add_task(task)
        return "ok"

    app_metrics_handle = isolated(app)
    call(app, "/signup", method="POST")
    assert seen_during_task == [1.0]


def slow_stream_app(chunks: int, delay: float) -> FastAPI:
    app = FastAPI()

    @app.get("/export/{fmt}")
    async def export(fmt: str) -> StreamingResponse:
        async def body():  # type: ignore[no-untyped-def]
            for i in range(chunks):
                await asyncio.sleep(delay)
                yield f"row {i}\n".encode()

        return StreamingResponse(body(), media_type="text/plain")

    return app


def test_streaming_response_is_timed_to_its_last_chunk() -> None:
    app = slow_stream_app(5, 0.02)
    isolated(app)
    result = call(app, "/export/csv")
    assert result.status == 200
    assert result.complete
    assert result.body.count(b"row") == 5
    text = scrape(app)
    took = value(text, "http_request_duration_seconds_sum", method="GET", endpoint="/export/{fmt}")
    assert took is not None
    assert took >= 0.1
    assert (
        value(text, "http_requests_total", method="GET", endpoint="/export/{fmt}", status="200")
        == 1
    )


def test_client_disconnect_mid_stream_is_counted_as_499() -> None:
    app = slow_stream_app(50, 0.01)
    isolated(app)
    result = call(app, "/export/csv", disconnect_after_chunks=2)
    assert not result.complete
    text = scrape(app)
    assert (
        value(text, "http_requests_total", method="GET", endpoint="/export/{fmt}", status="499")
        == 1
    )
    assert (
        value(text, "http_requests_total", method="GET", endpoint="/export/{fmt}", status="200")
        is None
    )
    assert value(text, "http_requests_in_progress", method="GET") == 0


def test_client_gone_before_a_slow_response_is_counted_as_499() -> None:
    app = FastAPI()

    @app.get("/report/{rid}")
    async def report(rid: int) -> str:
        await asyncio.sleep(0.2)
        return "done"

    isolated(app)
    call(app, "/report/1", disconnect_after_seconds=0.05)
    call(app, "/report/2")
    assert counted(app, "/report/{rid}", "499") == 1
    assert counted(app, "/report/{rid}", "200") == 1


def test_exception_mid_stream_is_counted_as_500() -> None:
    app = FastAPI()

    @app.get("/feed")
    async def feed() -> StreamingResponse:
        async def body():  # type: ignore[no-untyped-def]
            yield b"first\n"
            raise RuntimeError("backend went away")

        return StreamingResponse(body())

    isolated(app)
    with pytest.raises(RuntimeError):
        call(app, "/feed")
    assert counted(app, "/feed", "500") == 1


def test_app_that_sends_nothing_is_counted_as_500() -> None:
    app = FastAPI()

    @app.get("/silent")
    async def silent() -> None:
        return None

    async def mute(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    app.router.routes[-1].app = mute  # type: ignore[attr-defined]
    isolated(app)
    call(app, "/silent")
    assert counted(app, "/silent", "500") == 1


def test_in_progress_counts_requests_until_their_response_completes() -> None:
    app = FastAPI()
    gate = asyncio.Event()

    @app.get("/wait")
    async def wait() -> str:
        await gate.wait()
        return "done"

    metrics = isolated(app)

    def in_progress() -> float | None:
        return value(metrics.render()[0].decode(), "http_requests_in_progress", method="GET")

    async def scenario() -> list[float | None]:
        seen = [in_progress()]
        pending = [asyncio.create_task(request(app, "/wait")) for _ in range(3)]
        await asyncio.sleep(0.05)
        seen.append(in_progress())
        gate.set()
        await asyncio.gather(*pending)
        seen.append(in_progress())
        return seen

    assert asyncio.run(scenario()) == [0, 3, 0]


def test_excluded_paths_and_templates_are_only_counted_apart() -> None:
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> str:
        return "ok"

    @app.get("/internal/{name}")
    async def internal(name: str) -> str:
        return name

    @app.get("/files/{name:path}")
    async def files(name: str) -> str:
        return name

    @app.get("/kept")
    async def kept() -> str:
        return "ok"

    isolated(app, exclude_paths=["/healthz", "/internal/{name}", "/files/{name:path}"])
    for path in ("/healthz", "/internal/a", "/internal/b", "/files/a/b.txt", "/kept"):
        assert call(app, path).status == 200
    text = scrape(app)
    measured = [line for line in text.splitlines() if line.startswith("http_request")]
    assert not [line for line in measured if "/healthz" in line or "/internal" in line]
    assert value(text, "http_requests_total", method="GET", endpoint="/kept", status="200") == 1
    excluded = "http_excluded_requests_total"
    assert value(text, excluded, endpoint="/healthz", status="200") == 1
    assert value(text, excluded, endpoint="/internal/{name}", status="200") == 2
    assert value(text, excluded, endpoint="/files/{name}", status="200") == 1


def test_non_http_scopes_pass_through() -> None:
    seen: list[str] = []

    app = FastAPI()
    isolated(app)

    async def lifespan() -> None:
        messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

        async def receive() -> dict[str, str]:
            return next(messages)

        async def send(message: dict[str, str]) -> None:
            seen.append(message["type"])

        await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)

    asyncio.run(lifespan())
    assert seen == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_histogram_buckets_match_prometheus_client_semantics() -> None:
    from prometheus_client import Histogram, generate_latest

    observations = [0.0, 0.005, 0.0050001, 0.1, 0.25, 9.99, 10.0, 10.5, 1e6]
    app = FastAPI()
    metrics = isolated(app)
    reference_registry = CollectorRegistry()
    reference = Histogram(
        "ref", "ref", buckets=app_metrics.HTTP_BUCKETS, registry=reference_registry
    )
    for seconds in observations:
        metrics.http.observe("GET", "/x", 200, seconds)
        reference.observe(seconds)
    ours = scrape(app)
    theirs = generate_latest(reference_registry).decode()
    for le in [*(str(b) for b in app_metrics.HTTP_BUCKETS), "+Inf"]:
        assert value(
            ours, "http_request_duration_seconds_bucket", method="GET", endpoint="/x", le=le
        ) == value(theirs, "ref_bucket", le=le), le
    assert value(ours, "http_request_duration_seconds_sum", method="GET", endpoint="/x") == value(
        theirs, "ref_sum"
    )
