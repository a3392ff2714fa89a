"""The traffic generator drives every route of the mix and moves the metrics it should."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from assistant import Settings
from assistant.traffic import MIX, parse, run
from tests.service.backends import Postgres, Redis

from .harness import metric, serve

pytestmark = [pytest.mark.service, pytest.mark.anyio]

TOKEN = "traffic-token"


async def test_a_short_run_exercises_the_mix_and_the_metrics(
    fresh_database: Postgres, redis_flushed: Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(
        database_url=fresh_database.url,
        redis_url=redis_flushed.url,
        api_token=TOKEN,
        metrics_source_ttl_seconds=0,
        sms_outbox=True,  # the generator answers codes from the simulated SMS outbox
    )
    async with serve(settings) as service:
        # 1,500 requests: the rarest action (weight 1 of 130, and it needs a user first) is
        # then picked about 11 times, so "every action ran" does not hang on luck
        argv = ["--url", "http://localhost", "--token", TOKEN, "--rate", "400",
                "--duration", "60", "--max-requests", "1500", "--seed", "7",
                "--redis-url", redis_flushed.url]  # fmt: skip
        stats = await run(parse(argv), transport=httpx.ASGITransport(app=service.app))
        text = await service.scrape()

    # every pick is sent or skipped (nothing to act on yet: how many depends on the order in
    # which concurrent requests finish); skips stay rare
    assert stats.sent + stats.skipped == 1500
    assert stats.skipped < 150, stats.skipped
    assert set(stats.statuses) == set(MIX), "every action ran"
    seen = {status for counts in stats.statuses.values() for status in counts}
    assert {"200", "201", "401", "404", "409", "422"} <= seen
    assert (metric(text, "user_registrations_total") or 0) >= 20
    assert (metric(text, "phone_verifications_total", status="verified") or 0) >= 1
    assert (metric(text, "phone_verifications_total", status="failed") or 0) >= 1
    assert (metric(text, "active_sessions") or 0) >= 1
    refreshed = sum(
        metric(text, "oauth_token_refresh_total", provider=p, status="success") or 0
        for p in ("google", "microsoft", "github")
    )
    assert refreshed >= 1
    assert stats.statuses["send_sms"]["202"] >= 1
    delivered = sum(
        metric(text, "sms_messages_total", provider=p, status="success") or 0
        for p in ("twilio", "vonage")
    )
    assert delivered >= 1
    assert stats.statuses["enqueue_task"]["422"] >= 1
    assert (metric(text, "oauth_connected_users") or 0) >= 1
    summary = capsys.readouterr().out
    assert summary.splitlines()[0].startswith(f"{stats.sent} requests in")


def test_bad_arguments_are_refused_with_a_clear_message() -> None:
    for argv, message in (
        (["--token", "t", "--rate", "0"], "--rate must be in (0, 500]"),
        (["--token", "t", "--duration", "100000"], "--duration must be in (0, 86400]"),
        ([], "an API token is needed"),
    ):
        cmd = [sys.executable, "-m", "assistant.traffic", *argv]
        env = {"PATH": "/usr/bin:/bin"}
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 2
        assert message in done.stderr


async def test_an_outage_is_counted_not_crashed_on() -> None:
    """Every request answered 503: each action records what it got, none raises."""

    def outage(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": "database_unavailable"})

    argv = ["--url", "http://localhost", "--token", TOKEN, "--rate", "200",
            "--duration", "5", "--max-requests", "200", "--seed", "3"]  # fmt: skip
    stats = await run(parse(argv), transport=httpx.MockTransport(outage))
    statuses = {status for counts in stats.statuses.values() for status in counts}
    assert statuses == {"503"}
