"""Domain metrics: the specification's names, zero-initialised, closed label sets enforced."""

from __future__ import annotations

import asyncio
import logging

import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

import app_metrics

from .driver import samples, scrape, value

SPEC_NAMES = {
    "http_requests_total": "counter",
    "http_request_duration_seconds": "histogram",
    "http_requests_in_progress": "gauge",
    "sms_messages_total": "counter",
    "sms_processing_duration_seconds": "histogram",
    "sms_queue_length": "gauge",
    "sms_cost_total": "counter",
    "oauth_integrations_active": "gauge",
    "oauth_token_refresh_total": "counter",
    "oauth_errors_total": "counter",
    "oauth_operation_duration_seconds": "histogram",
    "database_connections_active": "gauge",
    "database_connection_pool_utilization": "gauge",
    "database_response_time_seconds": "gauge",
    "database_health_status": "gauge",
    "task_execution_duration_seconds": "histogram",
    "task_queue_length": "gauge",
    "user_registrations_total": "counter",
    "phone_verifications_total": "counter",
    "active_sessions": "gauge",
}


@pytest.fixture
def wired() -> tuple[FastAPI, app_metrics.Metrics]:
    app = FastAPI()
    metrics = app_metrics.instrument(
        app,
        registry=CollectorRegistry(),
        sms_providers=["twilio", "vonage"],
        oauth_providers=["google", "microsoft", "github"],
        task_types=["send_sms", "refresh_tokens"],
        task_queues=["default", "sms"],
    )

    async def db() -> bool:
        return True

    metrics.health.add("database", db)
    metrics.sms.queue_length_from(lambda: 4)
    metrics.oauth.active_integrations_from(lambda: {"google": 3})
    metrics.oauth.connected_users_from(lambda: 2)
    metrics.tasks.queue_lengths_from(lambda: {"sms": 5})
    metrics.sms.queue_age_from(lambda: 12.5)
    metrics.tasks.queue_ages_from(lambda: {"default": 3.0})
    metrics.users.active_sessions_from(lambda: 7)
    metrics.users.registered_users_from(lambda: 10)
    metrics.database.pool_from(lambda: app_metrics.PoolStats(size=10, checked_out=4))
    return app, metrics


def test_every_specified_family_is_exposed_with_its_type(wired: tuple) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    app, _ = wired
    types = {}
    for family in text_string_to_metric_families(scrape(app)):
        name = family.name + ("_total" if family.type == "counter" else "")
        types[name] = family.type
    for name, kind in SPEC_NAMES.items():
        assert types.get(name) == kind, name


def test_known_label_sets_start_at_zero(wired: tuple) -> None:
    app, _ = wired
    text = scrape(app)
    for provider in ("twilio", "vonage"):
        for status in ("success", "failure"):
            assert value(text, "sms_messages_total", status=status, provider=provider) == 0
        assert value(text, "sms_cost_total", provider=provider) == 0
    for provider in ("google", "microsoft", "github"):
        assert value(text, "oauth_token_refresh_total", provider=provider, status="failure") == 0
    for status in ("sent", "verified", "failed", "expired"):
        assert value(text, "phone_verifications_total", status=status) == 0
    for limit in ("attempts", "phone", "user", "client"):
        assert value(text, "phone_verification_refusals_total", limit=limit) == 0
    for outcome in ("success", "failure", "timeout"):
        assert value(text, "task_executions_total", task_type="send_sms", outcome=outcome) == 0
    assert value(text, "user_registrations_total") == 0
    for reason in ("bad_entry", "retries_exhausted"):
        assert value(text, "sms_dead_letters_total", reason=reason) == 0
        assert value(text, "task_dead_letters_total", queue="default", reason=reason) == 0


def test_scrape_time_values_come_from_their_sources(wired: tuple) -> None:
    app, _ = wired
    text = scrape(app)
    assert value(text, "sms_queue_length") == 4
    assert value(text, "oauth_integrations_active", provider="google") == 3
    assert value(text, "oauth_integrations_active", provider="github") == 0  # known, absent
    assert value(text, "oauth_connected_users") == 2
    assert value(text, "task_queue_length", queue="sms") == 5
    assert value(text, "task_queue_length", queue="default") == 0
    assert value(text, "sms_queue_oldest_age_seconds") == 12.5
    assert value(text, "task_queue_oldest_age_seconds", queue="default") == 3
    assert value(text, "task_queue_oldest_age_seconds", queue="sms") == 0  # known, absent
    assert value(text, "active_sessions") == 7
    assert value(text, "registered_users") == 10
    assert value(text, "database_connections_active") == 4
    assert value(text, "database_connection_pool_size") == 10
    assert value(text, "database_connection_pool_utilization") == 0.4
    assert value(text, "database_health_status") == 1


def test_sms_helper_records_outcome_cost_and_duration(wired: tuple) -> None:
    app, metrics = wired
    metrics.sms.message("twilio", "success", cost=0.0079, duration_seconds=0.3)
    metrics.sms.message("twilio", "failure", duration_seconds=1.2)
    metrics.sms.message("vonage", "delivered?", cost=0.01)  # type: ignore[arg-type]
    text = scrape(app)
    assert value(text, "sms_messages_total", status="success", provider="twilio") == 1
    assert value(text, "sms_messages_total", status="failure", provider="twilio") == 1
    assert value(text, "sms_messages_total", status="<other>", provider="vonage") == 1
    assert value(text, "sms_cost_total", provider="twilio") == pytest.approx(0.0079)
    assert value(text, "sms_processing_duration_seconds_count", provider="twilio") == 2
    assert value(text, "sms_processing_duration_seconds_bucket", provider="twilio", le="0.5") == 1


def test_oauth_helpers(wired: tuple) -> None:
    app, metrics = wired
    metrics.oauth.token_refresh("google", success=True)
    metrics.oauth.token_refresh("google", success=False)
    metrics.oauth.error("google", "invalid_grant")
    with metrics.oauth.time_operation("microsoft", "refresh"):
        pass

    async def connect() -> None:
        async with metrics.oauth.time_operation("github", "connect"):
            await asyncio.sleep(0.01)

    asyncio.run(connect())
    text = scrape(app)
    assert value(text, "oauth_token_refresh_total", provider="google", status="success") == 1
    assert value(text, "oauth_token_refresh_total", provider="google", status="failure") == 1
    assert value(text, "oauth_errors_total", provider="google", error_type="invalid_grant") == 1
    assert (
        value(
            text,
            "oauth_operation_duration_seconds_count",
            provider="microsoft",
            operation="refresh",
        )
        == 1
    )
    took = value(
        text, "oauth_operation_duration_seconds_sum", provider="github", operation="connect"
    )
    assert took is not None
    assert took >= 0.01


def test_task_tracking_records_outcomes(wired: tuple) -> None:
    app, metrics = wired
    with metrics.tasks.track("send_sms"):
        pass
    with pytest.raises(ValueError, match="provider down"), metrics.tasks.track("send_sms"):
        raise ValueError("provider down")
    with pytest.raises(TimeoutError), metrics.tasks.track("refresh_tokens"):
        raise TimeoutError
    metrics.tasks.executed("refresh_tokens", "success", 2.0)
    text = scrape(app)
    for task_type, outcome, n in (
        ("send_sms", "success", 1),
        ("send_sms", "failure", 1),
        ("refresh_tokens", "timeout", 1),
        ("refresh_tokens", "success", 1),
    ):
        assert value(text, "task_executions_total", task_type=task_type, outcome=outcome) == n
    assert value(text, "task_execution_duration_seconds_count", task_type="send_sms") == 2


def test_user_helpers(wired: tuple) -> None:
    app, metrics = wired
    metrics.users.registered()
    metrics.users.registered()
    metrics.users.phone_verification("sent")
    metrics.users.phone_verification("verified")
    text = scrape(app)
    assert value(text, "user_registrations_total") == 2
    assert value(text, "phone_verifications_total", status="sent") == 1
    assert value(text, "phone_verifications_total", status="verified") == 1


def test_verification_refusals_by_limit_in_a_closed_set(wired: tuple) -> None:
    app, metrics = wired
    metrics.users.phone_verification_refused("phone")
    metrics.users.phone_verification_refused("phone")
    metrics.users.phone_verification_refused("+14155550123")  # never a label value
    text = scrape(app)
    assert value(text, "phone_verification_refusals_total", limit="phone") == 2
    assert value(text, "phone_verification_refusals_total", limit="<other>") == 1
    assert "4155550123" not in text


def test_const_labels_are_on_every_series() -> None:
    app = FastAPI()
    metrics = app_metrics.instrument(
        app,
        registry=CollectorRegistry(),
        const_labels={"service": "pa", "env": "test"},
        sms_providers=["twilio"],
    )
    metrics.sms.queue_length_from(lambda: 1)
    metrics.users.registered()
    text = scrape(app)
    ours = [(n, dict(labels)) for (n, labels) in samples(text)]
    assert ours
    for name, labels in ours:
        assert labels.get("service") == "pa" and labels.get("env") == "test", name


BAD_NUMBERS = [-0.01, float("nan"), float("inf"), float("-inf"), "lots"]


@pytest.mark.parametrize("bad", BAD_NUMBERS)
def test_an_invalid_sms_cost_is_logged_and_skipped(
    wired: tuple, bad: object, caplog: pytest.LogCaptureFixture
) -> None:
    app, metrics = wired
    with caplog.at_level(logging.WARNING, logger="app_metrics"):
        metrics.sms.message("twilio", "success", cost=bad, duration_seconds=0.3)  # type: ignore[arg-type]
    metrics.sms.message("twilio", "success", cost=0.01)
    text = scrape(app)
    assert value(text, "sms_messages_total", status="success", provider="twilio") == 2
    assert value(text, "sms_cost_total", provider="twilio") == pytest.approx(0.01)
    assert value(text, "sms_processing_duration_seconds_count", provider="twilio") == 1
    assert any("cost" in r.getMessage() for r in caplog.records if r.name == "app_metrics")


@pytest.mark.parametrize("bad", BAD_NUMBERS)
def test_invalid_durations_are_logged_and_skipped(
    wired: tuple, bad: object, caplog: pytest.LogCaptureFixture
) -> None:
    app, metrics = wired
    with caplog.at_level(logging.WARNING, logger="app_metrics"):
        metrics.sms.message("twilio", "failure", cost=0.02, duration_seconds=bad)  # type: ignore[arg-type]
        metrics.oauth.observe_operation("google", "refresh", bad)  # type: ignore[arg-type]
        metrics.tasks.executed("send_sms", "success", bad)  # type: ignore[arg-type]
    metrics.tasks.executed("send_sms", "success", 0.5)
    text = scrape(app)
    assert value(text, "sms_messages_total", status="failure", provider="twilio") == 1
    assert value(text, "sms_cost_total", provider="twilio") == pytest.approx(0.02)
    assert value(text, "sms_processing_duration_seconds_count", provider="twilio") == 0
    assert value(text, "sms_processing_duration_seconds_sum", provider="twilio") == 0
    assert (
        value(
            text, "oauth_operation_duration_seconds_count", provider="google", operation="refresh"
        )
        is None
    )
    assert value(text, "task_executions_total", task_type="send_sms", outcome="success") == 2
    assert value(text, "task_execution_duration_seconds_count", task_type="send_sms") == 1
    assert value(text, "task_execution_duration_seconds_sum", task_type="send_sms") == 0.5
    warned = [r for r in caplog.records if r.name == "app_metrics" and r.levelno == logging.WARNING]
    assert len(warned) == 3


def test_scalar_readers_share_one_path_and_accept_async_readers(wired: tuple) -> None:
    app, metrics = wired

    async def sessions() -> int:
        return 8

    metrics.users.active_sessions_from(sessions)
    metrics.users.registered_users_from(lambda: 11.5)
    metrics.oauth.connected_users_from(lambda: "3")
    metrics.sms.queue_length_from(lambda: None)  # not a number: an error, left out
    text = scrape(app)
    assert value(text, "active_sessions") == 8
    assert value(text, "registered_users") == 11.5
    assert value(text, "oauth_connected_users") == 3
    assert value(text, "sms_queue_length") is None
    assert (
        value(text, "app_metrics_scrape_source_errors_total", source="sms_queue", reason="error")
        == 1
    )
