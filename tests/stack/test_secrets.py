"""Secrets: stage and prod refuse missing or example values, naming them; dev starts from
nothing; what `make up` writes is private and complete."""

from __future__ import annotations

import hashlib
import json
import secrets
import stat
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest

from stack import ROOT
from stack.secrets import EXAMPLE, SECRETS, needed, prepare, resolve
from stack.settings import StackError, read_env_file
from stack.tools import checkable

STAGE_SECRETS = [s.variable for s in SECRETS if "stage" in s.environments]


def good_values(env: str) -> dict[str, str]:
    """Every value the environment needs; the secrets random, as `make secrets` writes them."""
    return {name: secrets.token_urlsafe(24) for name in needed(env)} | {
        "ALERTMANAGER_WEBHOOK_URL": "https://hooks.internal/alerts",
        "ALERTMANAGER_WATCHDOG_URL": "https://deadman.internal/ping",
        "ALERTMANAGER_SMTP_SMARTHOST": "smtp.internal:587",
        "ALERTMANAGER_SMTP_FROM": "am@corp.test",
        "ALERTMANAGER_SMTP_USERNAME": "am@corp.test",
        "ALERTMANAGER_ONCALL_EMAIL": "oncall@corp.test",
    }


@pytest.mark.parametrize("env", ["stage", "prod"])
def test_missing_secrets_are_named(env: str, tmp_path: Path) -> None:
    with pytest.raises(StackError) as error:
        resolve(env, tmp_path / "absent.env", environ={})
    message = str(error.value)
    assert f"ENV={env} will not start" in message
    for name in [s.variable for s in SECRETS if env in s.environments]:
        assert name in message
    assert "ALERTMANAGER_SLACK_CHANNEL" not in message  # a usable default


@pytest.mark.parametrize("env", ["stage", "prod"])
def test_the_example_values_are_refused(env: str) -> None:
    with pytest.raises(StackError, match="still the example placeholder") as error:
        resolve(env, EXAMPLE, environ={})
    for name in STAGE_SECRETS:
        assert name in str(error.value)


def test_one_default_left_is_named_alone(tmp_path: Path) -> None:
    values = good_values("prod") | {"METRICS_TOKEN": read_env_file(EXAMPLE)["METRICS_TOKEN"]}
    with pytest.raises(StackError) as error:
        resolve("prod", tmp_path / "absent.env", environ=values)
    assert str(error.value).count("METRICS_TOKEN") == 1
    assert "GRAFANA_ADMIN_PASSWORD" not in str(error.value)


def test_the_environment_overrides_the_dotenv_file(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    given = good_values("stage")
    dotenv.write_text("".join(f"{k}={v}\n" for k, v in given.items()))
    dotenv.chmod(0o600)
    from_environment = secrets.token_urlsafe(24)
    values = resolve("stage", dotenv, environ={"METRICS_TOKEN": from_environment})
    assert values["METRICS_TOKEN"] == from_environment
    assert values["POSTGRES_PASSWORD"] == given["POSTGRES_PASSWORD"]


def test_dev_starts_from_nothing_with_the_example_values(tmp_path: Path) -> None:
    values = resolve("dev", tmp_path / "absent.env", environ={})
    assert values["GRAFANA_ADMIN_PASSWORD"] == read_env_file(EXAMPLE)["GRAFANA_ADMIN_PASSWORD"]


def test_prepare_again_closes_others_out_but_keeps_the_runtimes_group(tmp_path: Path) -> None:
    # natively the running components' group reads the secrets (0750): a second `make up`
    # must not close it out while they run (a notification found the password unreadable)
    values = resolve("dev", tmp_path / "absent.env", environ={})
    run_dir = prepare("dev", values, tmp_path / "run" / "dev")
    for directory in (run_dir, run_dir / "secrets"):
        directory.chmod(0o757)
    prepare("dev", values, run_dir)
    for directory in (run_dir, run_dir / "secrets"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o750


def test_prepare_writes_private_files_and_a_valid_alertmanager_config(tmp_path: Path) -> None:
    values = good_values("prod") | {
        "ASSISTANT_DATABASE_PASSWORD": "p@ss:w/rd%-Zq7vK2mX9LtB",
        "ALERTMANAGER_SLACK_CHANNEL": '#alerts "quoted"',
    }
    run_dir = prepare("prod", resolve("prod", tmp_path / "absent.env", environ=values),
                      tmp_path / "run" / "prod")  # fmt: skip
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((run_dir / "secrets").stat().st_mode) == 0o700
    secret_files = run_dir / "secrets"
    assert (secret_files / "metrics_token").read_text() == values["METRICS_TOKEN"] + "\n"
    assert (secret_files / "assistant_database_url").read_text() == (
        "postgresql+asyncpg://assistant:p%40ss%3Aw%2Frd%25-Zq7vK2mX9LtB@postgres:5432/assistant\n"
    )
    config = (run_dir / "alertmanager.yml").read_text()
    assert "${" not in config
    # Redis's users: the ACL file holds the passwords' SHA-256 only; the app's URL, the
    # exporter's password file (its address to the password) and the healthcheck's password
    acl = (secret_files / "redis_acl").read_text()
    app, exporter = values["REDIS_PASSWORD"], values["REDIS_EXPORTER_PASSWORD"]
    assert acl.startswith("user default off ")
    for user, password in (("assistant", app), ("redis_exporter", exporter)):
        assert f"user {user} on #{hashlib.sha256(password.encode()).hexdigest()} " in acl
        assert password not in acl
    assert (secret_files / "assistant_redis_url").read_text() == (
        f"redis://assistant:{quote(app, safe='')}@redis:6379/0\n"
    )
    exporter_file = json.loads((secret_files / "redis_exporter_passwords").read_text())
    assert exporter_file == {"redis://redis:6379": exporter}
    healthcheck = (secret_files / "redis_healthcheck_password").read_text().strip()
    assert f"#{hashlib.sha256(healthcheck.encode()).hexdigest()}" in acl and app not in healthcheck
    assert 'channel: "#alerts \\"quoted\\""' in config
    assert "https://hooks.internal/alerts" in config
    assert values["ALERTMANAGER_SLACK_URL"] not in config  # a file, not in the configuration
    copy = tmp_path / "am.yml"
    copy.write_text(checkable(config, ROOT, secret_files))
    done = subprocess.run(
        [str(ROOT / "alertmanager" / "amtool"), "check-config", str(copy)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
