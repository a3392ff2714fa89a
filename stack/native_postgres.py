"""PostgreSQL in the native runtime: its cluster on first use (what the postgres image does),
and on every start, before the server listens, its authentication and its roles.

Every connection authenticates with scram-sha-256, over TCP and over the socket, whose
directory only the server's user can enter (0700): initdb gets the superuser's password from a
0600 file that is removed after, and ``pg_hba.conf`` is written on every start, so a cluster
made with ``trust`` before is brought in line. The roles (postgres_roles.py: the app's owns
its schema and nothing more) are applied by PostgreSQL's single-user mode on the stopped
cluster, which is no connection: no password to hold, none in a command line or an
environment, and a changed superuser password takes effect like the others. The app and the
exporter connect over TCP on 127.0.0.1 with their own roles.

The test suites' throwaway clusters (tests/service/backends.py) are made by the same
``initdb`` and ``secure_sockets``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .native_config import Component, Layout, postgres_bin, unreachable_by_others
from .postgres_roles import DATABASE, SUPERUSER
from .settings import StackError

AUTHENTICATION = ("--auth-local=scram-sha-256", "--auth-host=scram-sha-256")
HBA = """\
# Written on every start by the stack (stack/native_postgres.py): every connection
# authenticates with scram-sha-256, over the socket (its directory is 0700) and over TCP.
local   all   all                  scram-sha-256
host    all   all   127.0.0.1/32   scram-sha-256
host    all   all   ::1/128        scram-sha-256
"""
# single-user mode: stop at the first error (exit 1), and never log a failed statement (a
# role's verifier); -j: a statement ends with a semicolon and an empty line
SINGLE_USER = ("--single", "-j", "-c", "exit_on_error=on", "-c", "log_min_error_statement=panic",
               "-c", "log_checkpoints=off")  # fmt: skip
User = str | int | None  # a user name or uid to run as (None: this process's user)


def initdb(
    binary: str, data: Path, password: str, user: User = None, group: User = None
) -> subprocess.CompletedProcess[str]:
    """initdb with scram-sha-256 for every connection and the superuser ``postgres`` with
    ``password``, read from a 0600 file beside ``data`` (owned by ``user``, removed after)."""
    descriptor, pwfile = tempfile.mkstemp(prefix=".initdb-password-", dir=data.parent)
    try:
        with os.fdopen(descriptor, "w") as f:
            f.write(password + "\n")
        if user is not None:
            shutil.chown(pwfile, user, group if group is not None else user)
        return subprocess.run(
            [binary, "-D", str(data), "-U", SUPERUSER, "-E", "UTF8", *AUTHENTICATION,
             f"--pwfile={pwfile}", "--no-instructions",
             "--no-sync"],  # an empty cluster: nothing to lose; PostgreSQL itself syncs later
            capture_output=True, text=True, check=False, timeout=120, cwd=data.parent,
            user=user, group=group if group is not None else user,
            extra_groups=[] if user is not None else None,
        )  # fmt: skip
    finally:
        os.unlink(pwfile)


def secure_sockets(sockets: Path, user: User = None, group: User = None) -> None:
    """The socket directory: the server's user's alone (0700), whatever it was before."""
    sockets.mkdir(parents=True, exist_ok=True)
    if user is not None:
        shutil.chown(sockets, user, group if group is not None else user)
    sockets.chmod(0o700)


def single_user(
    binary: str, data: Path, database: str, sql: str, user: User = None
) -> subprocess.CompletedProcess[str]:
    """``sql`` run as the superuser by ``postgres --single`` on the stopped cluster; raises
    StackError with the server's messages (never the statement) when it fails."""
    done = subprocess.run(
        [binary, *SINGLE_USER, "-D", str(data), database],
        input=sql + "\n\n", capture_output=True, text=True, check=False, timeout=120,
        cwd=data.parent, user=user, group=user, extra_groups=[] if user is not None else None,
        env={k: v for k, v in os.environ.items() if not k.startswith("PG")},
    )  # fmt: skip
    if done.returncode != 0:
        raise StackError(f"postgres --single ({database}) failed:\n{done.stderr.strip()}")
    return done


def init_postgres(component: Component, where: Layout) -> bool:
    """Before every start: the cluster on first use (True), the socket directory 0700,
    pg_hba.conf, then the roles from the current secrets (postgres_roles.py). As the
    postgres user when running as root."""
    data, sockets = component.data
    user = component.user
    if user:
        _check_traversable(data.parent, user)
    secure_sockets(sockets, user)
    secrets = where.run_dir / "secrets"
    first = not (data / "PG_VERSION").exists()
    if first:
        data.mkdir(parents=True, exist_ok=True)
        if user:
            shutil.chown(data, user, user)
        data.chmod(0o700)
        password = (secrets / "postgres_password").read_text().strip()
        try:
            done = initdb(postgres_bin("initdb"), data, password, user)
            if done.returncode != 0:
                raise StackError(f"initdb failed:\n{done.stdout}{done.stderr}")
            single_user(binary_of(component), data, "postgres", f"CREATE DATABASE {DATABASE};",
                        user)  # fmt: skip
        except BaseException:
            shutil.rmtree(data, ignore_errors=True)  # the next start begins again
            raise
    _write_hba(data, user)
    roles = (secrets / "postgres_roles").read_text()  # root's 0700 directory: given on stdin
    single_user(binary_of(component), data, DATABASE, roles, user)
    return first


def binary_of(component: Component) -> str:
    return component.argv[0]


def _write_hba(data: Path, user: User) -> None:
    hba = data / "pg_hba.conf"
    if hba.exists() and hba.read_text() == HBA:
        return
    descriptor, tmp = tempfile.mkstemp(prefix=".pg_hba-", dir=data)
    with os.fdopen(descriptor, "w") as f:
        f.write(HBA)
    if user:
        shutil.chown(tmp, user, user)
    os.replace(tmp, hba)


def _check_traversable(directory: Path, user: str) -> None:
    """PostgreSQL runs as ``user``: every directory above its data must let others through."""
    parent = unreachable_by_others(directory)
    if parent is not None:
        raise StackError(
            f"PostgreSQL runs as user {user}, which cannot reach {directory}: {parent} is "
            f"not traversable by others (chmod o+x {parent}, or set STACK_RUN_ROOT elsewhere)"
        )
