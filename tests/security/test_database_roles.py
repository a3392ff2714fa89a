"""Findings 3 and 1 (PostgreSQL), natively: the app connects as a role that owns its schema and
nothing more, and PostgreSQL authenticates every connection (scram-sha-256, no trust), its
socket directory its user's alone.

PostgreSQL here is the native runtime's own: the postgres component as stack/native_config.py
derives it from the Compose files, prepared and started by stack/native.py (initdb, pg_hba,
the roles in single-user mode; as the postgres user when root), with the secrets `make up`
writes. The app's attacks use the app's own URL. Before: the app was the superuser in Compose,
natively the owner of its database (it could drop it, make schemas); initdb --auth-local=trust
let any local user in as the superuser without a password, through a socket directory anyone
could enter."""

from __future__ import annotations

import asyncio
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from stack import native
from stack import secrets as stack_secrets
from stack.native_config import Component, Layout, components, port_variables, ports, postgres_bin
from stack.native_postgres import binary_of
from stack.native_user import Reach, account
from stack.processes import free_port, stop
from stack.project import Project

TIMEOUT = 30.0


@dataclass
class NativePostgres:
    layout: Layout
    component: Component
    state: dict[str, Any]
    values: dict[str, str]

    @property
    def port(self) -> int:
        assert self.component.port is not None
        return self.component.port

    @property
    def sockets(self) -> Path:
        return self.component.data[1]

    @property
    def data(self) -> Path:
        return self.component.data[0]

    def app_dsn(self) -> str:
        """The app's own URL (native.database_url), for asyncpg."""
        return native.database_url(self.layout, self.port).replace("+asyncpg", "")

    def start(self) -> None:
        # as `make up` starts it: nothing of this run root is closed to its user (no Reach)
        native._launch(self.component, self.layout, self.state, account(), Reach())
        deadline = time.monotonic() + TIMEOUT
        while not self.component.probe():
            assert time.monotonic() < deadline, (self.layout.log_dir / "postgres.log").read_text()
            time.sleep(0.1)

    def stop(self) -> None:
        entry = self.state["components"].pop("postgres", None)
        if entry is not None:
            stop(native.running_of(entry), entry["stop_signal"])

    def psql(self, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
        """psql without any password (-w: never asks), as ``user`` (an OS user) when root."""
        environ = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        return subprocess.run(
            [postgres_bin("psql"), "-w", "-p", str(self.port), "-d", "postgres", "-tAc",
             "SELECT current_user", *args],
            capture_output=True, text=True, timeout=TIMEOUT, check=False, cwd="/",
            env=environ | {"PGCONNECT_TIMEOUT": "5"}, user=user,
        )  # fmt: skip


def strong() -> str:
    return secrets.token_urlsafe(24)


def make(root: Path) -> NativePostgres:
    """The dev stack's postgres component in the run root ``root``, its secrets written."""
    dotenv = root / "dev.env"
    values = {
        "POSTGRES_PASSWORD": strong(),
        "ASSISTANT_DATABASE_PASSWORD": strong(),
        "POSTGRES_EXPORTER_PASSWORD": strong(),
    }
    dotenv.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    dotenv.chmod(0o600)
    layout = Layout("dev", root)
    stack_secrets.prepare("dev", stack_secrets.resolve("dev", dotenv, {}), layout.run_dir)
    project = Project("dev", layout.run_dir)
    local = ports(project, {port_variables()["postgres"]: str(free_port())})
    made = {c.name: c for c in components(project, layout, local, "unused")}
    return NativePostgres(layout, made["postgres"], {"env": "dev", "components": {}}, values)


@pytest.fixture(scope="module")
def run_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="stack-database-roles-"))
    root.chmod(0o755)  # PostgreSQL (user postgres) keeps its data below
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres(run_root: Path) -> Iterator[NativePostgres]:
    server = make(run_root)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def outcome(statement: str, dsn: str, database: str = "assistant") -> str:
    """What PostgreSQL answers the app's role: 'allowed' or the error's class and text."""

    async def run() -> str:
        connection = await asyncpg.connect(f"{dsn.rsplit('/', 1)[0]}/{database}", timeout=10)
        try:
            await connection.execute(statement)
            return "allowed"
        except asyncpg.PostgresError as error:
            return f"{type(error).__name__}: {error}"
        finally:
            await connection.close()

    return asyncio.run(run())


ATTEMPTS = [
    ("CREATE ROLE intruder LOGIN", "assistant"),
    ("SELECT rolname, rolpassword FROM pg_authid", "assistant"),
    ("COPY (SELECT 1) TO PROGRAM 'id'", "assistant"),
    ("ALTER ROLE assistant SUPERUSER", "assistant"),
    ("CREATE DATABASE intruder", "assistant"),
    ("CREATE SCHEMA intruder", "assistant"),
    ("ALTER DATABASE assistant SET search_path = intruder", "assistant"),
    ("DROP DATABASE assistant", "postgres"),
]


@pytest.mark.parametrize(("statement", "database"), ATTEMPTS, ids=[s for s, _ in ATTEMPTS])
def test_the_apps_role_owns_its_schema_and_nothing_more(
    postgres: NativePostgres, statement: str, database: str, attack
) -> None:
    a = attack(f"the app's role (its own URL): {statement}", "permission denied")
    seen = outcome(statement, postgres.app_dsn(), database)
    a.happened = seen
    assert seen.startswith("InsufficientPrivilegeError"), seen
    a.blocked = True


def test_the_apps_role_makes_its_tables_and_is_no_superuser(postgres: NativePostgres) -> None:
    async def run() -> tuple[Any, ...]:
        connection = await asyncpg.connect(postgres.app_dsn(), timeout=10)
        try:
            await connection.execute("CREATE TABLE IF NOT EXISTS mine (id int)")
            return tuple(
                await connection.fetchrow(
                    "SELECT r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication,"
                    " r.rolbypassrls, (SELECT count(*) FROM pg_auth_members"
                    "                  WHERE member = r.oid),"
                    " (SELECT tableowner FROM pg_tables WHERE tablename = 'mine'),"
                    " (SELECT nspowner::regrole::text FROM pg_namespace"
                    "  WHERE nspname = 'public'),"
                    " (SELECT datdba::regrole::text FROM pg_database"
                    "  WHERE datname = current_database())"
                    " FROM pg_roles r WHERE r.rolname = current_user"
                )
            )
        finally:
            await connection.close()

    found = asyncio.run(run())
    assert found == (False, False, False, False, False, 0, "assistant", "assistant", "postgres")


def server_user() -> str | None:
    return "postgres" if os.geteuid() == 0 else None


def test_no_connection_without_a_password(postgres: NativePostgres, attack) -> None:
    socket = attack(
        "psql over the socket as its owner, no password, as the superuser",
        "refused (scram-sha-256, no trust)",
    )
    tcp = attack("psql over TCP 127.0.0.1, no password, as the superuser", "refused")
    over_socket = postgres.psql("-h", str(postgres.sockets), "-U", "postgres", user=server_user())
    over_tcp = postgres.psql("-h", "127.0.0.1", "-U", "postgres")
    socket.happened = f"exit {over_socket.returncode}: {over_socket.stderr.strip()[:90]}"
    tcp.happened = f"exit {over_tcp.returncode}: {over_tcp.stderr.strip()[:90]}"
    for done in (over_socket, over_tcp):
        assert done.returncode != 0 and "no password supplied" in done.stderr, done
    socket.blocked = tcp.blocked = True
    hba = (postgres.data / "pg_hba.conf").read_text().splitlines()
    methods = {line.split()[-1] for line in hba if line.strip() and not line.startswith("#")}
    assert methods == {"scram-sha-256"}


def test_the_socket_directory_is_its_owners_alone(postgres: NativePostgres, attack) -> None:
    a = attack(
        "another local user connects over the socket",
        "the socket directory is 0700: no way in",
    )
    found = postgres.sockets.stat()
    owner = pwd.getpwnam(server_user()).pw_uid if server_user() else os.geteuid()
    assert (found.st_mode & 0o777, found.st_uid) == (0o700, owner)
    if os.geteuid() != 0:
        a.happened = "mode 0700 (no other user to try as: not root)"
        a.blocked = True
        return
    done = postgres.psql("-h", str(postgres.sockets), "-U", "postgres", user="nobody")
    a.happened = f"mode {found.st_mode & 0o777:04o}; as nobody: {done.stderr.strip()[:80]}"
    assert done.returncode != 0 and "Permission denied" in done.stderr, done
    a.blocked = True


def test_a_cluster_made_with_trust_is_brought_in_line_at_the_next_start() -> None:
    """A native cluster from before (trust on the socket, a 0755 socket directory, the app's
    role the owner of its database, no superuser password): the next start makes it scram
    everywhere, 0700, the database the superuser's, the passwords from the secrets."""
    root = Path(tempfile.mkdtemp(prefix="stack-database-legacy-"))
    root.chmod(0o755)
    old = make(root)
    try:
        data, sockets, user = old.data, old.sockets, old.component.user
        for path in (data, sockets):
            path.mkdir(parents=True, mode=0o755)
            if user:
                shutil.chown(path, user, user)
        data.chmod(0o700)
        as_user: dict[str, Any] = {"user": user, "group": user} if user else {}
        run: dict[str, Any] = {"check": True, "capture_output": True, "text": True,
                               "timeout": 120, "cwd": "/", **as_user}  # fmt: skip
        initdb = [postgres_bin("initdb"), "-D", str(data), "-U", "postgres",
                  "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"]  # fmt: skip
        subprocess.run(initdb, **run)
        made_before = "CREATE ROLE assistant LOGIN\nCREATE DATABASE assistant OWNER assistant\n"
        single = [binary_of(old.component), "--single", "-D", str(data), "postgres"]
        subprocess.run(single, input=made_before, **run)
        old.start()
        mode = sockets.stat().st_mode & 0o777
        assert mode == 0o700
        assert "trust" not in (data / "pg_hba.conf").read_text()
        assert old.psql("-h", str(sockets), "-U", "postgres", user=server_user()).returncode != 0
        owner = outcome(
            "DO $$ BEGIN IF (SELECT datdba::regrole::text FROM pg_database"
            " WHERE datname = 'assistant') <> 'postgres' THEN RAISE 'not moved'; END IF; END $$",
            old.app_dsn(),
        )
        assert owner == "allowed"
    finally:
        old.stop()
        shutil.rmtree(root, ignore_errors=True)
