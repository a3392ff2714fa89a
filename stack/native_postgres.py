"""PostgreSQL in the native runtime: its cluster on first use (what the postgres image does),
and its roles' passwords from the current secrets on every start.

The SQL that sets the passwords is ``.run/<env>/secrets/postgres_roles`` (postgres_roles.py:
SCRAM verifiers, never the passwords), given to psql as a file over the local socket, so no
password is ever in a command line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from . import ROOT
from .native_config import Component, Layout, postgres_bin, unreachable_by_others
from .settings import StackError

SUPERUSER = "postgres"


def init_postgres(component: Component) -> bool:
    """initdb on first use (True), as the postgres user when running as root."""
    data, sockets = component.data
    sockets.mkdir(parents=True, exist_ok=True)
    if component.user:
        _check_traversable(data.parent, component.user)
    if (data / "PG_VERSION").exists():
        return False
    data.mkdir(parents=True, exist_ok=True)
    for path in (data, sockets):
        if component.user:
            shutil.chown(path, component.user, component.user)
    data.chmod(0o700)
    done = subprocess.run(
        [
            postgres_bin("initdb"),
            "-D",
            str(data),
            "-U",
            SUPERUSER,
            "-E",
            "UTF8",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--no-instructions",
            "--no-sync",  # an empty cluster: nothing to lose; PostgreSQL itself syncs later
        ],
        capture_output=True,
        text=True,
        check=False,
        user=component.user,
    )
    if done.returncode != 0:
        shutil.rmtree(data, ignore_errors=True)
        raise StackError(f"initdb failed:\n{done.stdout}{done.stderr}")
    return True


def _check_traversable(directory: Path, user: str) -> None:
    """PostgreSQL runs as ``user``: every directory above its data must let others through."""
    parent = unreachable_by_others(directory)
    if parent is not None:
        raise StackError(
            f"PostgreSQL runs as user {user}, which cannot reach {directory}: {parent} is "
            f"not traversable by others (chmod o+x {parent}, or set STACK_RUN_ROOT elsewhere)"
        )


def _run(component: Component, argv: list[str], extra: dict[str, str] | None = None) -> None:
    """A client step as the superuser over the cluster's socket."""
    _, sockets = component.data
    bin_dir = str(Path(postgres_bin("psql")).parent)
    environ = {
        **os.environ,
        "PGHOST": str(sockets),
        "PGPORT": str(component.port),
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
    }
    done = subprocess.run(
        argv, capture_output=True, text=True, check=False, env=environ | (extra or {}),
        timeout=60,
    )  # fmt: skip
    if done.returncode != 0:
        raise StackError(f"{Path(argv[0]).name} failed:\n{done.stdout}{done.stderr}")


def _psql(*args: str) -> list[str]:
    return [postgres_bin("psql"), "-v", "ON_ERROR_STOP=1", "-q", "-U", SUPERUSER, *args]


def bootstrap_postgres(component: Component, where: Layout) -> None:
    """What the postgres image does on first start: the service's role and database, then
    the same monitoring-role script (exporters/postgres/create-monitoring-role.sh). The
    passwords come next, from ``set_passwords``."""
    secrets = where.run_dir / "secrets"
    _run(component, _psql("-d", "postgres", "-c", "CREATE ROLE assistant LOGIN"))
    _run(component, _psql("-d", "postgres", "-c", "CREATE DATABASE assistant OWNER assistant"))
    _run(
        component,
        [str(ROOT / "exporters" / "postgres" / "create-monitoring-role.sh")],
        {
            "POSTGRES_USER": SUPERUSER,
            "POSTGRES_DB": "assistant",
            "POSTGRES_EXPORTER_PASSWORD_FILE": str(secrets / "postgres_exporter_password"),
        },
    )


def set_passwords(component: Component, where: Layout) -> None:
    """Every role's password from the current secrets (secrets/postgres_roles), on every
    start: a changed secret takes effect at the next `make up`."""
    roles = where.run_dir / "secrets" / "postgres_roles"
    _run(component, _psql("-d", "postgres", "-f", str(roles)))
