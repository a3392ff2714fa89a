"""Label values stay bounded whatever clients send, and no personal data gets in."""

from __future__ import annotations

import asyncio
import random
import uuid

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

import app_metrics
from app_metrics.labels import LabelGuard, looks_personal

from .driver import call, request, samples, scrape, value


def series(text: str) -> int:
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def api_app() -> FastAPI:
    app = FastAPI()

    @app.get("/users/{user_id}")
    async def user(user_id: int) -> int:
        return user_id

    @app.get("/users/{user_id}/phones")
    async def phones(user_id: int) -> list[str]:
        return []

    @app.post("/sms")
    async def sms() -> str:
        return "queued"

    @app.get("/health")
    async def health() -> str:
        return "ok"

    return app


async def _burst(app: FastAPI, paths: list[tuple[str, str]]) -> None:
    for method, path in paths:
        await request(app, path, method=method)


def test_ten_thousand_random_unknown_paths_add_at_most_20_series() -> None:
    app = api_app()
    app_metrics.instrument(app, registry=CollectorRegistry())
    before = series(scrape(app))
    asyncio.run(_burst(app, [("GET", f"/x/{uuid.uuid4()}/{i}") for i in range(10_000)]))
    text = scrape(app)
    added = series(text) - before
    assert added <= 20, added
    assert (
        value(text, "http_requests_total", method="GET", endpoint="<unmatched>", status="404")
        == 10_000
    )


def slash_probes(methods: tuple[str, ...], n: int = 10_000) -> list[tuple[str, str]]:
    """Real routes with their trailing slash toggled, random ids, cycling over ``methods``."""
    rng = random.Random(7)
    templates = ("/users/{}/", "/users/{}/phones/", "/sms/", "/health/")
    return [
        (methods[i % len(methods)], rng.choice(templates).format(rng.randrange(10**9)))
        for i in range(n)
    ]


def test_ten_thousand_trailing_slash_probes_add_at_most_20_series() -> None:
    app = api_app()
    app_metrics.instrument(app, registry=CollectorRegistry())
    before = series(scrape(app))
    asyncio.run(_burst(app, slash_probes(("GET",))))
    text = scrape(app)
    assert series(text) - before <= 20, series(text) - before
    assert (
        value(text, "http_requests_total", method="GET", endpoint="<unmatched>", status="307")
        == 10_000
    )


def test_slash_probes_with_several_methods_add_15_series_per_method() -> None:
    app = api_app()
    app_metrics.instrument(app, registry=CollectorRegistry())
    before = series(scrape(app))
    asyncio.run(_burst(app, slash_probes(("GET", "POST", "DELETE"))))
    assert series(scrape(app)) - before <= 3 * 15


def test_unknown_http_method_becomes_other() -> None:
    app = api_app()
    app_metrics.instrument(app, registry=CollectorRegistry())
    for method in ("PROPFIND", "BREW", "X-" + "A" * 50):
        call(app, "/health", method=method)
    text = scrape(app)
    assert (
        value(text, "http_requests_total", method="<other>", endpoint="/health", status="405") == 3
    )
    assert "PROPFIND" not in text
    assert "BREW" not in text


def test_label_cap_replaces_new_values_with_overflow_and_counts_them() -> None:
    app = FastAPI()
    metrics = app_metrics.instrument(
        app, registry=CollectorRegistry(), label_cap=3, sms_providers=("a", "b")
    )
    for provider in ("a", "b", "c", "d", "e", "d"):
        metrics.sms.message(provider, "success")
    text = scrape(app)
    for provider, count in (("a", 1), ("b", 1), ("c", 1), ("<overflow>", 3)):
        assert value(text, "sms_messages_total", status="success", provider=provider) == count
    assert value(text, "sms_messages_total", status="success", provider="d") is None
    assert (
        value(
            text,
            "app_metrics_label_rejections_total",
            metric="sms_messages_total",
            label="provider",
            reason="overflow",
        )
        == 2
    )


def test_values_that_look_personal_are_redacted() -> None:
    app = FastAPI()
    metrics = app_metrics.instrument(app, registry=CollectorRegistry())
    metrics.oauth.error("google", "user jane@example.com denied")
    metrics.oauth.error("+15551234567", "invalid_grant")
    metrics.tasks.executed("send_to_0f8fad5b-d9cb-469f-a165-70867728950e", "success", 0.1)
    text = scrape(app)
    assert "example.com" not in text
    assert "5551234567" not in text
    assert "0f8fad5b" not in text
    assert value(text, "oauth_errors_total", provider="google", error_type="<redacted>") == 1
    assert value(text, "oauth_errors_total", provider="<redacted>", error_type="invalid_grant") == 1
    assert (
        value(
            text,
            "app_metrics_label_rejections_total",
            metric="oauth_errors_total",
            label="error_type",
            reason="personal_data",
        )
        == 1
    )


def test_personal_data_detector() -> None:
    for bad in (
        "+4915112345678",
        "jane@example.com",
        "550e8400-e29b-41d4-a716-446655440000",
        "sk_live_51HbX9aKx3j2k4L5m6N7o8P9q",
        "deadbeefdeadbeefdead",
        "user 1234567",
        "+1 415-555-0100",
        "(415) 555-0100",
        "+44 20 7946 0958",
        "10.12.145.200",
    ):
        assert looks_personal(bad), bad
    for good in (
        "/users/{user_id}/phones/{phone_id}/verify",
        "google",
        "invalid_grant",
        "send_verification_sms",
        "200",
        "<unmatched>",
        "microsoft",
        "twilio",
    ):
        assert not looks_personal(good), good


def test_guard_counts_each_rejection_once_per_new_value() -> None:
    rejected: list[tuple[str, str, str]] = []
    guard = LabelGuard("m", ("a",), 2, lambda *r: rejected.append(r))
    assert [guard.clean((v,))[0] for v in ("x", "y", "z", "x")] == ["x", "y", "<overflow>", "x"]
    assert rejected == [("m", "a", "overflow")]


def test_route_templates_are_not_screened_and_have_room_for_many_routes() -> None:
    app = FastAPI()
    templates = [
        "/@{username}",
        "/users/@me",
        "/api/v1/notification_preferences_v2/{preference_identifier}",
        *(f"/generated/route_{i}" for i in range(300)),
    ]

    async def handler() -> str:
        return "ok"

    for template in templates:
        app.add_api_route(template, handler)
    app_metrics.instrument(app, registry=CollectorRegistry(), label_cap=10)
    asyncio.run(
        _burst(
            app,
            [
                ("GET", t.replace("{username}", "jane").replace("{preference_identifier}", "7"))
                for t in templates
            ],
        )
    )
    parsed = samples(scrape(app))  # parsed once: 300 lookups in a large exposition
    for template in templates:
        key = (
            "http_requests_total",
            frozenset({"method": "GET", "endpoint": template, "status": "200"}.items()),
        )
        assert parsed.get(key) == 1, template
    endpoints = {dict(labels).get("endpoint") for (_, labels) in parsed}
    assert "<redacted>" not in endpoints
    assert "<overflow>" not in endpoints


def test_each_rejected_value_is_counted_once() -> None:
    app = FastAPI()
    metrics = app_metrics.instrument(app, registry=CollectorRegistry(), label_cap=1)
    for _ in range(5):
        for error_type in ("timeout", "invalid_grant", "rate_limited", "jane@example.com"):
            metrics.oauth.error("google", error_type)
    text = scrape(app)
    assert value(text, "oauth_errors_total", provider="google", error_type="<overflow>") == 10
    assert (
        value(
            text,
            "app_metrics_label_rejections_total",
            metric="oauth_errors_total",
            label="error_type",
            reason="overflow",
        )
        == 2
    )
    assert (
        value(
            text,
            "app_metrics_label_rejections_total",
            metric="oauth_errors_total",
            label="error_type",
            reason="personal_data",
        )
        == 1
    )
