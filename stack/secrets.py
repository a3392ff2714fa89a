"""Secrets and receiver settings: from .env or the environment, checked, written as files.

``resolve(env)`` takes each value from the environment, else .env (or STACK_DOTENV). dev takes
.env.example's values for what is not set; stage and prod take only its usable defaults
(channel names) and refuse to start, in one message naming each variable and why: a missing
value, a placeholder (change-me, *.invalid), a secret too weak (strength.py: fewer than 16
characters, a common default, under 64 bits of estimated entropy) or shared with another
secret, and a .env other users can open. ``prepare(env)`` writes ``.run/<env>/`` (mode 0700):
``secrets/<name>`` files that Compose mounts as secrets (with the API's database URL and
``postgres_roles``, the roles' password verifiers: postgres_roles.py), and ``alertmanager.yml``,
the environment's generated Alertmanager configuration with its $-references filled.
``generate`` (`make secrets`) writes random values for the secrets the stack defines into .env.

It also writes ``web.yml``, the web configuration of Prometheus, Alertmanager and the
exporters, and the monitoring user's ``Authorization`` header as a secret (webauth.py); and
Redis's users (redis_acl.py): its ACL file, the app's Redis URL, the exporter's password file.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from secrets import token_urlsafe
from urllib.parse import quote

from . import ENVIRONMENTS, ROOT, redis_acl, webauth
from .postgres_roles import APP_ROLE, DATABASE, ROLES, roles_sql
from .settings import StackError, check_environment, placeholders, read_env_file, substitute
from .strength import duplicates, weaknesses

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
    issued_by: str | None = None  # None: the stack defines it, and `make secrets` writes it
    floor: bool = True  # held to strength.py's floor in stage and prod (not a URL)


STAGE, PROD = ("stage", "prod"), ("prod",)
SECRETS = (
    Secret("GRAFANA_ADMIN_PASSWORD", "grafana_admin_password"),
    # PostgreSQL's superuser, postgres (bootstrap only), and the app's role, assistant
    Secret("POSTGRES_PASSWORD", "postgres_password"),
    Secret("ASSISTANT_DATABASE_PASSWORD", "assistant_database_password"),
    Secret("POSTGRES_EXPORTER_PASSWORD", "postgres_exporter_password"),
    Secret("ASSISTANT_API_TOKEN", "assistant_api_token"),
    Secret("METRICS_TOKEN", "metrics_token"),
    Secret("ALERTMANAGER_SLACK_URL", "alertmanager_slack_url", STAGE, "Slack", floor=False),
    Secret(
        "ALERTMANAGER_WEBHOOK_TOKEN", "alertmanager_webhook_token", STAGE, "the webhook's owner"
    ),
    Secret("ALERTMANAGER_SMTP_PASSWORD", "alertmanager_smtp_password", PROD, "the mail provider"),
    # the pager: the PagerDuty Events v2 integration key of the on-call service
    Secret(
        "ALERTMANAGER_PAGERDUTY_ROUTING_KEY",
        "alertmanager_pagerduty_routing_key",
        PROD,
        "PagerDuty",
    ),
    # the monitoring user's (stack/webauth.py): Prometheus, Alertmanager, the exporters
    Secret(webauth.PASSWORD_VARIABLE, "monitoring_password"),
    # Redis's users (stack/redis_acl.py): the app's (API, worker), the exporter's
    Secret(redis_acl.APP_VARIABLE, redis_acl.APP_PASSWORD_FILE),
    Secret(redis_acl.EXPORTER_VARIABLE, redis_acl.EXPORTER_PASSWORD_FILE),
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


def exposed(dotenv: Path) -> str | None:
    """Why ``dotenv`` is open to other users (group or others have any access), or None."""
    if not dotenv.exists():
        return None
    mode = dotenv.stat().st_mode & 0o777
    if not mode & 0o077:
        return None
    return f"{dotenv} is open to other users (mode {mode:04o}): chmod 600 {dotenv}"


def too_weak(
    env: str, values: Mapping[str, str], defaults: Mapping[str, str]
) -> dict[str, list[str]]:
    """Each of the environment's secrets in ``values`` -> why it is too weak (strength.py) or
    shared with another one."""
    mine = {
        s.variable: values[s.variable]
        for s in SECRETS
        if s.variable in values and env in s.environments
    }
    found = {
        s.variable: weaknesses(mine[s.variable], defaults.values())
        for s in SECRETS
        if s.floor and s.variable in mine
    }
    for name, others in duplicates(mine).items():
        found.setdefault(name, []).append(f"the same value as {', '.join(others)}")
    return {name: reasons for name, reasons in found.items() if reasons}


def resolve(
    env: str, dotenv: Path = DOTENV, environ: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """Each needed variable from the environment, else ``dotenv``; dev falls back to
    .env.example. Raises StackError naming every missing, placeholder or (stage and prod) weak
    or shared value with its reasons, and a ``dotenv`` other users can open."""
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
    if env != "dev":
        given_values = {k: v for k, v in values.items() if k not in missing + placeholder}
        weak = too_weak(env, given_values, example)
        if weak:
            named = ", ".join(f"{name} ({'; '.join(why)})" for name, why in weak.items())
            problems.append(f"too weak or shared: {named}")
    hint = f"; `make secrets ENV={env}` writes strong ones" if env != "dev" else ""
    tail = (
        f" Set them in {dotenv} or the environment (see {EXAMPLE.name}{hint})." if problems else ""
    )
    loose = exposed(dotenv) if env != "dev" else None
    problems = [loose, *problems] if loose else problems
    if problems:
        raise StackError(f"ENV={env} will not start. {'; '.join(problems)}.{tail}")
    return values


def database_url(password: str, address: str = "postgres:5432") -> str:
    """The app's: its own role (postgres_roles.APP_ROLE), never the superuser."""
    user, database = APP_ROLE, DATABASE
    return f"postgresql+asyncpg://{user}:{quote(password, safe='')}@{address}/{database}"


def prepare(
    env: str, values: Mapping[str, str], run_dir: Path | None = None, root: Path = ROOT
) -> Path:
    """Write the secret files and the filled Alertmanager configuration; return the dir."""
    run_dir = run_dir or run_root() / env
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    secrets_dir = run_dir / "secrets"
    for directory in (run_dir, secrets_dir):
        directory.mkdir(mode=0o700, exist_ok=True)
        # closed to others; a group the native runtime gave it keeps its access, since
        # a running Prometheus reads its password file anew on every request
        directory.chmod(stat.S_IMODE(directory.stat().st_mode) & 0o750 | 0o700)
    contents = {s.file: values[s.variable] for s in SECRETS if env in s.environments}
    contents["assistant_database_url"] = database_url(values[ROLES[APP_ROLE]])
    monitoring = values[webauth.PASSWORD_VARIABLE]
    contents[webauth.AUTHORIZATION_FILE] = webauth.authorization(monitoring)
    contents |= redis_acl.files(values)  # anew each time: a changed password takes effect
    for name, text in contents.items():
        # readable inside the containers (users 472, 65534, ...); the 0700 directory keeps
        # other users of this machine out
        write_new(secrets_dir / name, text + "\n", 0o644)
    roles = secrets_dir / "postgres_roles"
    write_new(roles, roles_sql(values, roles.read_text() if roles.exists() else ""), 0o644)
    config = substitute(
        generated_alertmanager(env, root), values, f"alertmanager ({env})", quote=True
    )
    write_new(run_dir / "alertmanager.yml", config, 0o644)
    write_new(run_dir / webauth.WEB_CONFIG, webauth.web_config(env, monitoring, root), 0o644)
    return run_dir


# ---- which secrets a running stack started with -------------------------------------------


def _applied_file(run_dir: Path, runtime: str) -> Path:
    return run_dir / f"{runtime}-secrets.applied"  # in the 0700 run directory


def fingerprint(run_dir: Path) -> str:
    """A digest of the secret files `make up` wrote (kept only in the 0700 run directory)."""
    digest = hashlib.sha256()
    for secret in SECRETS:
        path = run_dir / "secrets" / secret.file
        if path.exists():
            digest.update(f"{secret.file}\0{path.read_text()}\0".encode())
    return digest.hexdigest()


def changed_since_applied(run_dir: Path, runtime: str) -> bool:
    """Whether the secrets differ from those the runtime's stack last started with."""
    applied = _applied_file(run_dir, runtime)
    return not applied.exists() or applied.read_text() != fingerprint(run_dir)


def mark_applied(run_dir: Path, runtime: str) -> None:
    write_new(_applied_file(run_dir, runtime), fingerprint(run_dir), 0o600)


# ---- make secrets ------------------------------------------------------------------------

NEW_DOTENV = (
    "# The stack's secrets and receiver settings (every variable: .env.example). Never commit\n"
    "# it; keep it mode 0600. `make secrets` wrote the random values below.\n"
)


def generate(
    env: str,
    rotate: str = "",
    dotenv: Path | None = None,
    environ: Mapping[str, str] = os.environ,
    say=print,
) -> None:
    """`make secrets`: a random value (43 URL-safe characters, 256 bits) for each secret the
    stack defines that ``dotenv`` does not set (or sets to a placeholder), and for each one
    ``rotate`` names ("NAME,NAME" or "all"); the file rewritten with mode 0600, every other
    line kept. Says which variables it wrote, never a value."""
    check_environment(env)
    dotenv = dotenv or dotenv_path()
    ours = [s.variable for s in SECRETS if s.issued_by is None and env in s.environments]
    asked = {name.strip() for name in rotate.split(",") if name.strip()}
    asked = set(ours) if asked == {"all"} else asked
    if asked - set(ours):
        raise StackError(
            f"ROTATE={rotate}: make secrets writes only {', '.join(ours)}; "
            f"{', '.join(sorted(asked - set(ours)))} not (set by hand in {dotenv})"
        )
    text = dotenv.read_text() if dotenv.exists() else NEW_DOTENV
    given = read_env_file(dotenv) if dotenv.exists() else {}
    written, kept = [], []
    for name in ours:
        if given.get(name, "").strip() and not is_placeholder(given[name]) and name not in asked:
            kept.append(name)
            continue
        line = f"{name}={token_urlsafe(32)}"
        pattern = re.compile(rf"^[ \t]*{name}=.*$", re.MULTILINE)
        if pattern.search(text):
            text = pattern.sub(lambda _, line=line: line, text)
        else:
            text += ("" if not text or text.endswith("\n") else "\n") + line + "\n"
        written.append(name)
    mode = dotenv.stat().st_mode & 0o777 if dotenv.exists() else None
    if written or mode != 0o600:
        write_new(dotenv, text, 0o600)
    if written:
        say(f"make secrets: wrote {', '.join(written)} to {dotenv} (mode 0600)")
    if kept:
        say(f"make secrets: kept {', '.join(kept)}, already set (ROTATE={','.join(kept)} "
            "or ROTATE=all replaces them)")  # fmt: skip
    if mode not in (None, 0o600) and not written:
        say(f"make secrets: {dotenv} was mode {mode:04o}, now 0600")
    _still_to_set(env, dotenv, environ, say)


def _still_to_set(env: str, dotenv: Path, environ: Mapping[str, str], say) -> None:
    """What `make up ENV=<env>` would still refuse, by name; the secrets the environment
    overrides."""
    given = read_env_file(dotenv)
    overridden = [s.variable for s in SECRETS if environ.get(s.variable)]
    if overridden:
        say(f"make secrets: {', '.join(overridden)} set in the environment, which overrides "
            f"{dotenv}")  # fmt: skip
    if env == "dev":
        return
    example = read_env_file(EXAMPLE)
    issuers = {s.variable: s.issued_by for s in SECRETS if s.issued_by}
    missing = []
    for name in needed(env):
        value = environ.get(name) or given.get(name) or example.get(name, "")
        if not value.strip() or is_placeholder(value):
            missing.append(f"{name} (from {issuers[name]})" if name in issuers else name)
    weak = too_weak(env, {k: v for k, v in given.items() if not is_placeholder(v)}, example)
    if missing:
        say(f"make secrets: still to set by hand for ENV={env}: {', '.join(missing)}")
    if weak:
        say(f"make secrets: too weak for ENV={env}: {', '.join(weak)} (ROTATE=NAME replaces "
            "the stack's own; set the others anew by hand)")  # fmt: skip


def write_new(path: Path, text: str, mode: int) -> None:
    """``text`` into ``path`` through a new file beside it: made by this call (never one found
    there, never through a link) and given ``mode`` before a byte is written."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    os.fchmod(descriptor, mode)
    with os.fdopen(descriptor, "w") as f:
        f.write(text)
    tmp.replace(path)
