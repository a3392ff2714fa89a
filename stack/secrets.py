"""Secrets and receiver settings: from .env or the environment, checked, written as files.

``prepare(env)`` writes ``.run/<env>/`` (mode 0700): ``secrets/<name>`` files that Compose
mounts as secrets, and ``alertmanager.yml``, the environment's generated Alertmanager
configuration with its $-references filled. dev takes .env.example's values for what is
not set; stage and prod take only its usable defaults (channel names) and refuse a missing
value or a placeholder (change-me, *.invalid), naming each one.

It also writes ``web.yml``, the web configuration of Prometheus, Alertmanager and the
exporters, and the monitoring user's ``Authorization`` header as a secret (webauth.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from . import ENVIRONMENTS, ROOT, webauth
from .settings import StackError, check_environment, placeholders, read_env_file, substitute

EXAMPLE = ROOT / ".env.example"
DOTENV = ROOT / ".env"
RUN_DIR = ROOT / ".run"


def run_root() -> Path:
    """Where `make up` keeps secrets, rendered configuration, native data and logs: .run/, or
    STACK_RUN_ROOT (the tests' throwaway stacks)."""
    return Path(os.environ.get("STACK_RUN_ROOT") or RUN_DIR)


PLACEHOLDER_MARKERS = ("change-me", ".invalid")


@dataclass(frozen=True)
class Secret:
    variable: str  # in .env or the environment
    file: str  # under .run/<env>/secrets/, mounted at /run/secrets/<file>
    environments: tuple[str, ...] = ENVIRONMENTS


SECRETS = (
    Secret("GRAFANA_ADMIN_PASSWORD", "grafana_admin_password"),
    Secret("POSTGRES_PASSWORD", "postgres_password"),
    Secret("POSTGRES_EXPORTER_PASSWORD", "postgres_exporter_password"),
    Secret("ASSISTANT_API_TOKEN", "assistant_api_token"),
    Secret("METRICS_TOKEN", "metrics_token"),
    Secret("ALERTMANAGER_SLACK_URL", "alertmanager_slack_url", ("stage", "prod")),
    Secret("ALERTMANAGER_WEBHOOK_TOKEN", "alertmanager_webhook_token", ("stage", "prod")),
    Secret("ALERTMANAGER_SMTP_PASSWORD", "alertmanager_smtp_password", ("prod",)),
    # the monitoring user's (stack/webauth.py): Prometheus, Alertmanager, the exporters
    Secret(webauth.PASSWORD_VARIABLE, "monitoring_password"),
)


def dotenv_path() -> Path:
    """.env, or the file STACK_DOTENV names (one per environment, or for tests)."""
    return Path(os.environ.get("STACK_DOTENV") or DOTENV)


def generated_alertmanager(env: str, root: Path = ROOT) -> str:
    """alertmanager/generated/alertmanager.<env>.yml (`make generate`; checked for drift
    before anything starts), its receivers' ``${NAME}`` values still to fill."""
    return (root / "alertmanager" / "generated" / f"alertmanager.{env}.yml").read_text()


def needed(env: str) -> list[str]:
    """Variables the environment needs: its secrets and its receivers' ``${NAME}`` values."""
    names = [s.variable for s in SECRETS if env in s.environments]
    return names + sorted(placeholders(generated_alertmanager(env)) - set(names))


def is_placeholder(value: str) -> bool:
    return any(marker in value for marker in PLACEHOLDER_MARKERS)


def resolve(
    env: str, dotenv: Path = DOTENV, environ: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """Each needed variable from the environment, else ``dotenv``; dev falls back to
    .env.example. Raises StackError naming every missing or placeholder value."""
    check_environment(env)
    given = read_env_file(dotenv) if dotenv.exists() else {}
    example = read_env_file(EXAMPLE)
    values: dict[str, str] = {}
    missing, placeholder, invalid = [], [], []
    for name in needed(env):
        value = environ.get(name, given.get(name, ""))
        fallback = example.get(name, "")
        if not value.strip() and (env == "dev" or not is_placeholder(fallback)):
            value = fallback  # dev: every example value; elsewhere usable defaults only
        if not value.strip():
            missing.append(name)
        elif env != "dev" and is_placeholder(value):
            placeholder.append(name)
        elif value != value.strip() or "\n" in value:
            invalid.append(name)
        values[name] = value
    problems = [
        f"{label}: {', '.join(names)}"
        for label, names in (
            ("not set", missing),
            ("still the example placeholder", placeholder),
            ("leading/trailing white space", invalid),
        )
        if names
    ]
    if problems:
        raise StackError(
            f"ENV={env} will not start. {'; '.join(problems)}. Set them in {dotenv} or the "
            f"environment (see {EXAMPLE.name})."
        )
    return values


def database_url(password: str) -> str:
    return f"postgresql+asyncpg://assistant:{quote(password, safe='')}@postgres:5432/assistant"


def prepare(
    env: str, values: Mapping[str, str], run_dir: Path | None = None, root: Path = ROOT
) -> Path:
    """Write the secret files and the filled Alertmanager configuration; return the dir."""
    run_dir = run_dir or run_root() / env
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    secrets_dir = run_dir / "secrets"
    for directory in (run_dir, secrets_dir):
        directory.mkdir(mode=0o700, exist_ok=True)
        directory.chmod(0o700)
    contents = {s.file: values[s.variable] for s in SECRETS if env in s.environments}
    contents["assistant_database_url"] = database_url(values["POSTGRES_PASSWORD"])
    monitoring = values[webauth.PASSWORD_VARIABLE]
    contents[webauth.AUTHORIZATION_FILE] = webauth.authorization(monitoring)
    for name, text in contents.items():
        # readable inside the containers (users 472, 65534, ...); the 0700 directory keeps
        # other users of this machine out
        _write(secrets_dir / name, text + "\n", 0o644)
    config = substitute(
        generated_alertmanager(env, root), values, f"alertmanager ({env})", quote=True
    )
    _write(run_dir / "alertmanager.yml", config, 0o644)
    _write(run_dir / webauth.WEB_CONFIG, webauth.web_config(env, monitoring, root), 0o644)
    return run_dir


def _write(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    tmp.replace(path)
