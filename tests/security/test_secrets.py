"""Finding 6: weak secrets in stage and prod. Each attack puts a weak, default, duplicated or
exposed secret in front of the checks `make up` runs (stack.secrets.resolve, the same call)
and expects a refusal naming the variable and the reason; `make secrets` must write values
that prod accepts, into a file only its owner can read."""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
from pathlib import Path

import pytest

from stack import ROOT
from stack.secrets import SECRETS, needed, resolve
from stack.settings import StackError, read_env_file

# receivers' settings and the secrets other parties issue: set by hand in a real .env
BY_HAND = {
    "ALERTMANAGER_SLACK_URL": "https://hooks.slack.com/services/T0/B0/" + "x" * 24,
    "ALERTMANAGER_WEBHOOK_URL": "https://hooks.internal/alerts",
    "ALERTMANAGER_WEBHOOK_TOKEN": "wh-" + secrets.token_urlsafe(24),
    "ALERTMANAGER_WATCHDOG_URL": "https://deadman.internal/ping",
    "ALERTMANAGER_SMTP_SMARTHOST": "smtp.internal:587",
    "ALERTMANAGER_SMTP_FROM": "am@corp.test",
    "ALERTMANAGER_SMTP_USERNAME": "am@corp.test",
    "ALERTMANAGER_SMTP_PASSWORD": "smtp-" + secrets.token_urlsafe(24),
    "ALERTMANAGER_ONCALL_EMAIL": "oncall@corp.test",
    "ALERTMANAGER_PAGERDUTY_ROUTING_KEY": secrets.token_hex(16),  # PagerDuty's 32 hex digits
}


def strong(env: str = "prod") -> dict[str, str]:
    """Every value prod needs, each secret random and strong."""
    values = {name: secrets.token_urlsafe(24) for name in needed(env)}
    return values | {k: v for k, v in BY_HAND.items() if k in values}


def refusal(env: str, environ: dict[str, str], dotenv: Path) -> str:
    with pytest.raises(StackError) as error:
        resolve(env, dotenv, environ=environ)
    return str(error.value)


def reasons(message: str, variable: str) -> str:
    """What the refusal says about one variable: ``NAME (reason; reason)``."""
    assert f"{variable} (" in message, message
    return message.split(f"{variable} (", 1)[1].split(")", 1)[0]


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("GRAFANA_ADMIN_PASSWORD", "admin", "a common default"),
        ("POSTGRES_PASSWORD", "postgres", "a common default"),
        ("ASSISTANT_DATABASE_PASSWORD", "assistant", "a common default"),
        ("METRICS_TOKEN", "a", "1 character, fewer than 16"),
        ("ASSISTANT_API_TOKEN", "Zx8#kq2LmW9v", "12 characters, fewer than 16"),
        ("POSTGRES_EXPORTER_PASSWORD", "Password12345678", "bits of estimated entropy"),
        ("ALERTMANAGER_SMTP_PASSWORD", "a" * 24, "bits of estimated entropy, fewer than 64"),
        ("REDIS_PASSWORD", "redis", "a common default"),
        ("REDIS_EXPORTER_PASSWORD", "redis-exporter-2024", "bits of estimated entropy"),
        ("ALERTMANAGER_PAGERDUTY_ROUTING_KEY", "pagerduty", "fewer than 16"),
    ],
)
def test_a_weak_secret_stops_prod_naming_the_variable_and_why(
    variable: str, value: str, reason: str, attack, tmp_path: Path
) -> None:
    a = attack(f"ENV=prod with {variable}={value}", f"refused: {variable}, {reason}")
    message = refusal("prod", strong() | {variable: value}, tmp_path / "absent.env")
    a.happened = message
    assert message.startswith("ENV=prod will not start.")
    assert reason in reasons(message, variable)
    assert not any(f"{s.variable} (" in message for s in SECRETS if s.variable != variable)
    assert len(value) < 5 or value not in message  # the reason, never the value
    a.blocked = True


@pytest.mark.parametrize("value", ["", "change-me-pagerduty"])
def test_prod_without_a_pager_key_will_not_start(value: str, attack, tmp_path: Path) -> None:
    a = attack(
        f"ENV=prod with ALERTMANAGER_PAGERDUTY_ROUTING_KEY={value!r}", "refused: the key named"
    )
    message = refusal(
        "prod", strong() | {"ALERTMANAGER_PAGERDUTY_ROUTING_KEY": value}, tmp_path / "absent.env"
    )
    a.happened = message
    label = "not set" if not value else "still the example placeholder"
    assert f"{label}: ALERTMANAGER_PAGERDUTY_ROUTING_KEY" in message
    a.blocked = True


def test_the_pager_key_is_needed_in_prod_only() -> None:
    assert "ALERTMANAGER_PAGERDUTY_ROUTING_KEY" in needed("prod")
    assert "ALERTMANAGER_PAGERDUTY_ROUTING_KEY" not in needed("stage") + needed("dev")


def test_every_reason_is_named_per_variable_in_one_message(attack, tmp_path: Path) -> None:
    a = attack("prod: admin, postgres, a at once", "one message, each variable with its reasons")
    weak = {
        "GRAFANA_ADMIN_PASSWORD": "admin",
        "POSTGRES_PASSWORD": "postgres",
        "METRICS_TOKEN": "a",
    }
    message = refusal("prod", strong() | weak, tmp_path / "absent.env")
    a.happened = message
    assert message.count("will not start") == 1
    for variable, value in weak.items():
        assert f"{len(value)} character" in reasons(message, variable)
        assert "bits of estimated entropy" in reasons(message, variable)
    assert "a common default" in reasons(message, "GRAFANA_ADMIN_PASSWORD")
    assert "a common default" not in reasons(message, "METRICS_TOKEN")
    a.blocked = True


def test_one_value_for_two_secrets_is_refused(attack, tmp_path: Path) -> None:
    a = attack("prod: METRICS_TOKEN = ASSISTANT_API_TOKEN", "refused: the same value, both named")
    shared = secrets.token_urlsafe(32)
    values = strong() | {"METRICS_TOKEN": shared, "ASSISTANT_API_TOKEN": shared}
    message = refusal("prod", values, tmp_path / "absent.env")
    a.happened = message
    assert reasons(message, "ASSISTANT_API_TOKEN") == "the same value as METRICS_TOKEN"
    assert reasons(message, "METRICS_TOKEN") == "the same value as ASSISTANT_API_TOKEN"
    a.blocked = True


def test_a_dotenv_others_can_read_is_refused_in_prod(attack, tmp_path: Path) -> None:
    a = attack(".env of mode 0644 in prod", "refused: the file named, chmod 600")
    dotenv = tmp_path / ".env"
    dotenv.write_text("".join(f"{k}={v}\n" for k, v in strong().items()))
    dotenv.chmod(0o644)
    message = refusal("prod", {}, dotenv)
    a.happened = message
    assert f"{dotenv} is open to other users (mode 0644): chmod 600 {dotenv}" in message
    dotenv.chmod(0o600)
    assert resolve("prod", dotenv, environ={})["METRICS_TOKEN"]
    a.blocked = True


def make_secrets(dotenv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in {s.variable for s in SECRETS}}
    return subprocess.run(
        ["make", "--no-print-directory", "secrets", "ENV=prod", *args], cwd=ROOT,
        env=environ | {"STACK_DOTENV": str(dotenv)}, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip


def test_make_secrets_writes_a_private_dotenv_that_prod_accepts(attack, tmp_path: Path) -> None:
    a = attack(
        "make secrets ENV=prod, then make up's checks", "0600 .env, no value printed, accepted"
    )
    dotenv = tmp_path / "prod.env"
    dotenv.write_text("# mine\nPOSTGRES_PASSWORD=change-me-postgres\nRETENTION=keep\n")
    dotenv.chmod(0o644)
    done = make_secrets(dotenv)
    assert done.returncode == 0, done.stdout + done.stderr
    assert stat.S_IMODE(dotenv.stat().st_mode) == 0o600
    written = read_env_file(dotenv)
    owned = ["GRAFANA_ADMIN_PASSWORD", "POSTGRES_PASSWORD", "ASSISTANT_DATABASE_PASSWORD",
             "POSTGRES_EXPORTER_PASSWORD", "ASSISTANT_API_TOKEN", "METRICS_TOKEN"]  # fmt: skip
    for name in owned:
        assert name in done.stdout
        assert written[name] not in done.stdout + done.stderr
    assert written["RETENTION"] == "keep" and dotenv.read_text().startswith("# mine\n")
    assert "ALERTMANAGER_SMTP_PASSWORD" in done.stdout  # still to set by hand, named
    assert "ALERTMANAGER_PAGERDUTY_ROUTING_KEY" in done.stdout
    with dotenv.open("a") as f:
        f.write("".join(f"{k}={v}\n" for k, v in BY_HAND.items()))
    values = resolve("prod", dotenv, environ={})
    a.happened = f"mode 0600, {len(owned)} written, prod's checks pass"
    assert all(values[name] == written[name] for name in owned)
    a.blocked = True


def test_make_secrets_keeps_what_is_set_unless_asked_to_rotate(tmp_path: Path) -> None:
    dotenv = tmp_path / "prod.env"
    assert make_secrets(dotenv).returncode == 0
    first = read_env_file(dotenv)
    again = make_secrets(dotenv)
    assert again.returncode == 0 and read_env_file(dotenv) == first
    assert "kept" in again.stdout
    rotated = make_secrets(dotenv, "ROTATE=METRICS_TOKEN")
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    now = read_env_file(dotenv)
    assert now["METRICS_TOKEN"] != first["METRICS_TOKEN"]
    assert {k: v for k, v in now.items() if k != "METRICS_TOKEN"} == {
        k: v for k, v in first.items() if k != "METRICS_TOKEN"
    }
    refused = make_secrets(dotenv, "ROTATE=ALERTMANAGER_SLACK_URL")
    assert refused.returncode != 0 and "ALERTMANAGER_SLACK_URL" in refused.stderr
