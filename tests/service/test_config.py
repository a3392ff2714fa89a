"""Settings from the environment: the API token is never guessed, shared or logged."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from assistant import Settings


def test_without_a_token_a_multi_worker_setup_refuses_to_start() -> None:
    with pytest.raises(ValueError, match="ASSISTANT_API_TOKEN or ASSISTANT_API_TOKEN_FILE"):
        Settings.from_env({})


def test_a_generated_token_goes_to_a_private_file_not_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    with caplog.at_level(logging.WARNING):
        settings = Settings.from_env({}, generate_token=True)
    [token_file] = tmp_path.glob("assistant-api-token.*")
    assert token_file.read_text().strip() == settings.api_token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert settings.api_token not in caplog.text
    assert str(token_file) in caplog.text


def test_the_token_comes_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-a-secret\n")
    settings = Settings.from_env({"ASSISTANT_API_TOKEN_FILE": str(tmp_path / "token")})
    assert settings.api_token == "from-a-secret"
    assert "from-a-secret" not in repr(settings)


def test_the_database_and_redis_urls_come_from_files(tmp_path: Path) -> None:
    (tmp_path / "db").write_text("postgresql+asyncpg://assistant:s3cret@postgres/assistant\n")
    (tmp_path / "redis").write_text("redis://redis:6379/1")
    settings = Settings.from_env(
        {
            "ASSISTANT_API_TOKEN": "t",
            "ASSISTANT_DATABASE_URL_FILE": str(tmp_path / "db"),
            "ASSISTANT_REDIS_URL_FILE": str(tmp_path / "redis"),
        }
    )
    assert settings.database_url == "postgresql+asyncpg://assistant:s3cret@postgres/assistant"
    assert settings.redis_url == "redis://redis:6379/1"
    assert "s3cret" not in repr(settings)
    with pytest.raises(ValueError, match="not both"):
        Settings.from_env(
            {
                "ASSISTANT_API_TOKEN": "t",
                "ASSISTANT_REDIS_URL": "redis://x",
                "ASSISTANT_REDIS_URL_FILE": str(tmp_path / "redis"),
            }
        )


def test_verification_limits_and_the_sms_outbox_come_from_the_environment() -> None:
    env = {
        "ASSISTANT_API_TOKEN": "t",
        "ASSISTANT_VERIFICATION_PHONE_LIMIT": "2",
        "ASSISTANT_VERIFICATION_CLIENT_WINDOW_SECONDS": "60",
        "ASSISTANT_SMS_OUTBOX": "true",
    }
    settings = Settings.from_env(env)
    assert settings.verification_phone_limit == 2
    assert settings.verification_client_window_seconds == 60.0
    assert settings.sms_outbox is True
    assert Settings.from_env({"ASSISTANT_API_TOKEN": "t"}).sms_outbox is False  # dev only
    with pytest.raises(ValueError, match="must be > 0: verification_user_limit"):
        Settings.from_env({**env, "ASSISTANT_VERIFICATION_USER_LIMIT": "0"})
    with pytest.raises(ValueError, match="ASSISTANT_SMS_OUTBOX='maybe' is not a valid boolean"):
        Settings.from_env({**env, "ASSISTANT_SMS_OUTBOX": "maybe"})


def test_the_metrics_listener_port_and_the_environment_come_from_the_environment() -> None:
    env = {"ASSISTANT_API_TOKEN": "t"}
    assert Settings.from_env(env).metrics_port is None  # off by default
    assert Settings.from_env(env).environment == "dev"
    settings = Settings.from_env(
        {**env, "ASSISTANT_METRICS_PORT": "9464", "ASSISTANT_ENVIRONMENT": "prod"}
    )
    assert (settings.metrics_port, settings.environment) == (9464, "prod")
    with pytest.raises(ValueError, match=r"metrics_port 0 is not within 1\.\.65535"):
        Settings.from_env({**env, "ASSISTANT_METRICS_PORT": "0"})
    with pytest.raises(ValueError, match="metrics_port and port are both 8000"):
        Settings.from_env({**env, "ASSISTANT_METRICS_PORT": "8000"})
    with pytest.raises(ValueError, match="environment 'qa' is not one of dev, stage, prod"):
        Settings.from_env({**env, "ASSISTANT_ENVIRONMENT": "qa"})
    assert Settings.from_env({**env, "ASSISTANT_DEBUG_ROUTES": "true"}).debug_routes  # dev
