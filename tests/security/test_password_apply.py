"""Finding 6: a changed password must take effect at the next `make up`, but PostgreSQL and
Grafana apply theirs only when they create their data. In Compose, the entry points put in
front of the images' own (postgres/entrypoint.sh, grafana/entrypoint.sh) set them on every
start; natively, stack/native_grafana.py does Grafana's (PostgreSQL's: test_password_change).
Each runs here as it runs for real, against what it works on: Debian's PostgreSQL binaries on
a real cluster; for Grafana (no binary here), a stand-in `grafana` that records its arguments
and standard input."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack import ROOT
from stack.native_config import Component, Layout
from stack.native_grafana import grafana_file_variables, reset_grafana_admin
from stack.native_postgres import initdb
from stack.postgres_roles import ROLES, roles_sql
from stack.processes import free_port
from tests.service.backends import postgres_bin_dir

TIMEOUT = 60


class Cluster:
    """A PostgreSQL data directory as the postgres image leaves it with compose.yaml's settings:
    superuser ``postgres`` with POSTGRES_PASSWORD, POSTGRES_INITDB_ARGS' scram-sha-256 on the
    socket and over TCP, the database ``assistant``, and the roles made at the first start by
    postgres/initdb-roles.sh through psql on the image's socket-only temporary server. With
    ``legacy``, as it was before issue 14: superuser ``assistant``, the socket trusted."""

    def __init__(self, root: Path, passwords: dict[str, str], legacy: bool = False) -> None:
        self.root = root
        self.data = root / "data"
        self.sockets = root / "sockets"
        self.port = free_port()
        self.bin = postgres_bin_dir()
        self.user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        for path in (self.data, self.sockets):
            path.mkdir(mode=0o700)
            if self.user:
                os.chown(path, self.user.pw_uid, self.user.pw_gid)
        self.pgpass = root / "pgpass"  # the image's PGPASSWORD, for psql at the first start
        self.pgpass.write_text(f"*:*:*:postgres:{passwords['POSTGRES_PASSWORD']}\n")
        self.pgpass.chmod(0o600)
        if self.user:
            os.chown(self.pgpass, self.user.pw_uid, self.user.pw_gid)
        if legacy:
            self.run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "assistant",
                     "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync")  # fmt: skip
            self.run(str(self.bin / "postgres"), "--single", "-D", str(self.data), "postgres",
                     input="CREATE DATABASE assistant\n")  # POSTGRES_DB  # fmt: skip
            return
        uid = self.user.pw_uid if self.user else None
        done = initdb(str(self.bin / "initdb"), self.data, passwords["POSTGRES_PASSWORD"], uid)
        assert done.returncode == 0, done.stdout + done.stderr
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write("host all all all scram-sha-256\n")  # POSTGRES_HOST_AUTH_METHOD
        self.pg_ctl("start")
        self.run(str(self.bin / "psql"), "-h", str(self.sockets), "-U", "postgres", "-d",
                 "postgres", "-c", "CREATE DATABASE assistant",
                 PGPASSFILE=str(self.pgpass))  # fmt: skip
        roles = self.roles_file(passwords)
        # run as the postgres user: a copy it can read (a checkout under /root is closed to it)
        script = self.root / "initdb-roles.sh"
        shutil.copyfile(ROOT / "postgres" / "initdb-roles.sh", script)
        script.chmod(0o755)
        self.run(str(script), POSTGRES_USER="postgres",
                 POSTGRES_DB="assistant", POSTGRES_ROLES_FILE=str(roles),
                 PGHOST=str(self.sockets), PGPASSFILE=str(self.pgpass))  # fmt: skip
        self.pg_ctl("stop")

    def roles_file(self, passwords: dict[str, str]) -> Path:
        roles = self.root / "postgres_roles"
        roles.write_text(roles_sql(passwords))  # as `make up` writes it
        roles.chmod(0o644)
        return roles

    def run(
        self, *argv: str, check: bool = True, input: str | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=TIMEOUT, check=False, input=input,
            user=self.user.pw_uid if self.user else None, cwd=self.root,
            env={**{k: v for k, v in os.environ.items() if not k.startswith("PG")},
                 "PGPORT": str(self.port), "PATH": f"{self.bin}:{os.environ['PATH']}", **env},
        )  # fmt: skip
        assert done.returncode == 0 or not check, done.stdout + done.stderr
        return done

    def pg_ctl(self, action: str, listen: str = "") -> None:
        options = f"-c listen_addresses='{listen}' -k {self.sockets}"
        log = str(self.sockets / "server.log")  # not our pipes: the server outlives pg_ctl
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-s", "-m", "fast",
                 "-l", log, "-o", options, action)  # fmt: skip

    def entry_point(self, roles: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
        """postgres/entrypoint.sh with a stand-in for the image's entry point (as root here, it
        runs PostgreSQL as the postgres user, as when Compose starts it as root); what it
        handed over to, or nothing."""
        handed = self.root / "handed-over"
        image = self.root / "docker-entrypoint.sh"
        image.write_text(f'#!/bin/sh\necho "$@" > {handed}\n')
        image.chmod(0o755)
        done = subprocess.run(
            [str(ROOT / "postgres" / "entrypoint.sh"), str(image), "postgres", "-c", "x=1"],
            capture_output=True, text=True, timeout=TIMEOUT, check=False, cwd=self.root,
            env={**os.environ, "PGDATA": str(self.data), "POSTGRES_USER": "postgres",
                 "POSTGRES_DB": "assistant", "POSTGRES_ROLES_FILE": str(roles),
                 "PATH": f"{self.bin}:{os.environ['PATH']}"},
        )  # fmt: skip
        return done, handed

    def logs_in(self, role: str, password: str, sql: str = "SELECT 1") -> str:
        """'yes', or psql's error: over TCP, as ``role`` with ``password``."""
        pgpass = self.root / "probe-pgpass"
        pgpass.write_text(f"*:*:*:{role}:{password}\n")
        pgpass.chmod(0o600)
        if self.user:
            os.chown(pgpass, self.user.pw_uid, self.user.pw_gid)
        done = self.run(
            str(self.bin / "psql"), "-w", "-h", "127.0.0.1", "-U", role, "-d", "assistant",
            "-v", "ON_ERROR_STOP=1", "-tAc", sql, check=False, PGPASSFILE=str(pgpass),
        )  # fmt: skip
        return "yes" if done.returncode == 0 else done.stderr.strip()


def passwords() -> dict[str, str]:
    return {variable: secrets.token_urlsafe(24) for variable in ROLES.values()}


@pytest.fixture
def cluster_root() -> Iterator[Path]:
    root = Path(os.environ.get("TMPDIR", "/tmp")) / f"stack-entrypoint-{secrets.token_hex(4)}"
    root.mkdir(mode=0o755)
    try:
        yield root
    finally:
        if (root / "data" / "postmaster.pid").exists():
            subprocess.run([str(postgres_bin_dir() / "pg_ctl"), "-D", str(root / "data"), "-m",
                            "immediate", "stop"], check=False, capture_output=True,
                           user="postgres" if os.geteuid() == 0 else None,
                           timeout=TIMEOUT)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def test_postgres_entry_point_sets_changed_passwords_on_an_existing_cluster(
    cluster_root: Path, attack
) -> None:
    a = attack(
        "Compose: old POSTGRES_PASSWORD after a change, postgres restarted",
        "old refused, new accepted (postgres/entrypoint.sh)",
    )
    old, new = passwords(), passwords()
    cluster = Cluster(cluster_root, old)  # the image's first start, with the old passwords
    done, handed = cluster.entry_point(cluster.roles_file(new))  # .env changed, make up
    assert done.returncode == 0, done.stdout + done.stderr
    assert handed.read_text() == "postgres -c x=1\n"  # the image's entry point, unchanged

    cluster.pg_ctl("start", listen="127.0.0.1")
    seen = {}
    for role, variable in ROLES.items():
        seen[f"old {role}"] = cluster.logs_in(role, old[variable]) == "yes"
        seen[f"new {role}"] = cluster.logs_in(role, new[variable]) == "yes"
    a.happened = ", ".join(f"{k}: {'accepted' if v else 'refused'}" for k, v in seen.items())
    assert seen == {f"{age} {role}": age == "new" for role in ROLES for age in ("old", "new")}
    a.blocked = True


def test_compose_the_apps_role_is_not_the_superuser(cluster_root: Path, attack) -> None:
    a = attack(
        "Compose: the app's URL creates a role",
        "refused: the app's role is not the superuser",
    )
    given = passwords()
    cluster = Cluster(cluster_root, given)
    cluster.pg_ctl("start", listen="127.0.0.1")
    app = given[ROLES["assistant"]]
    seen = cluster.logs_in("assistant", app, "CREATE ROLE intruder LOGIN")
    a.happened = seen
    assert "permission denied to create role" in seen, seen
    owner = cluster.logs_in("assistant", app, "CREATE TABLE mine (id int)")
    assert owner == "yes"  # its tables, in its schema
    a.blocked = True


def test_compose_refuses_a_cluster_whose_superuser_is_the_app(cluster_root: Path, attack) -> None:
    a = attack(
        "Compose: a cluster from before (the app its superuser, the socket trusted)",
        "refused at start, saying what to do",
    )
    given = passwords()
    cluster = Cluster(cluster_root, given, legacy=True)
    done, handed = cluster.entry_point(cluster.roles_file(given))
    a.happened = f"exit {done.returncode}: {' '.join(done.stderr.split())[:120]}"
    assert done.returncode != 0 and not handed.exists()
    assert "make clean ENV=dev RUNTIME=compose" in done.stderr
    assert "docs/security.md" in done.stderr
    a.blocked = True


def test_postgres_entry_point_refuses_a_failing_roles_file(cluster_root: Path) -> None:
    """A legacy superuser without trust lines (edited by hand): the roles SQL itself refuses."""
    given = passwords()
    cluster = Cluster(cluster_root, given, legacy=True)
    hba = cluster.data / "pg_hba.conf"
    hba.write_text(hba.read_text().replace("trust", "scram-sha-256"))
    done, handed = cluster.entry_point(cluster.roles_file(given))
    assert done.returncode != 0 and not handed.exists()
    assert "is this cluster's superuser" in done.stderr
    assert "SCRAM-SHA-256$" not in done.stderr  # a failed statement is never logged


def test_postgres_entry_point_leaves_a_first_start_to_the_image(tmp_path: Path) -> None:
    handed = tmp_path / "handed-over"
    image = tmp_path / "docker-entrypoint.sh"
    image.write_text(f'#!/bin/sh\necho "$@" > {handed}\n')
    image.chmod(0o755)
    done = subprocess.run(
        [str(ROOT / "postgres" / "entrypoint.sh"), str(image), "postgres"],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
        env={**os.environ, "PGDATA": str(tmp_path / "empty")},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert handed.read_text() == "postgres\n"
    assert "passwords set" not in done.stdout


def grafana_start(tmp_path: Path, database: bool) -> tuple[subprocess.CompletedProcess[str], Path]:
    """grafana/entrypoint.sh with a stand-in `grafana` on PATH and a stand-in /run.sh."""
    data, bin_dir = tmp_path / "data", tmp_path / "bin"
    data.mkdir()
    bin_dir.mkdir()
    if database:
        (data / "grafana.db").write_bytes(b"SQLite format 3\0")
    record = tmp_path / "grafana-cli"
    fake = bin_dir / "grafana"
    fake.write_text(f'#!/bin/sh\necho "$@" > {record}.args\ncat > {record}.stdin\n')
    fake.chmod(0o755)
    run_sh = tmp_path / "run.sh"
    run_sh.write_text(f"#!/bin/sh\necho started > {tmp_path / 'started'}\n")
    run_sh.chmod(0o755)
    secret = tmp_path / "grafana_admin_password"
    secret.write_text(secrets.token_urlsafe(24) + "\n")
    done = subprocess.run(
        [str(ROOT / "grafana" / "entrypoint.sh"), str(run_sh)],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
             "GF_PATHS_DATA": str(data), "GF_SECURITY_ADMIN_PASSWORD__FILE": str(secret)},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "started").exists()  # the image's entry point, after
    return done, record


def test_grafana_entry_point_resets_the_admin_password_on_an_existing_database(
    tmp_path: Path, attack
) -> None:
    a = attack(
        "Compose: old GRAFANA_ADMIN_PASSWORD after a change, grafana restarted",
        "grafana cli reset-admin-password from the secret, on stdin, before the server",
    )
    _, record = grafana_start(tmp_path, database=True)
    password = (tmp_path / "grafana_admin_password").read_text()
    args = Path(f"{record}.args").read_text()
    assert args.startswith("cli --homepath /usr/share/grafana --config /etc/grafana/grafana.ini")
    assert "admin reset-admin-password --password-from-stdin" in args
    assert password.strip() not in args  # never a command line
    assert Path(f"{record}.stdin").read_text() == password
    a.happened = f"grafana {args.strip()} < the secret; then the image's /run.sh"
    a.blocked = True


def test_grafana_entry_point_leaves_a_first_start_to_grafana(tmp_path: Path) -> None:
    _, record = grafana_start(tmp_path, database=False)
    assert not Path(f"{record}.args").exists()


def test_native_grafana_gets_the_secret_at_first_start_and_a_reset_after(
    tmp_path: Path, attack
) -> None:
    a = attack(
        "native Grafana: admin password at first start, and after a change",
        "the secret's: $__file{} at first start, grafana cli reset on an existing database",
    )
    secret = tmp_path / "dev" / "secrets" / "grafana_admin_password"
    secret.parent.mkdir(parents=True)
    secret.write_text(secrets.token_urlsafe(24) + "\n")
    environ = grafana_file_variables(
        {"GF_SECURITY_ADMIN_PASSWORD__FILE": str(secret), "GF_SECURITY_ADMIN_USER": "admin"}
    )  # the binary alone ignores __FILE: its admin would have been admin/admin
    assert environ == {
        "GF_SECURITY_ADMIN_PASSWORD": f"$__file{{{secret}}}",
        "GF_SECURITY_ADMIN_USER": "admin",
    }
    data = tmp_path / "grafana-data"
    data.mkdir()
    record = tmp_path / "cli"
    fake = tmp_path / "bin" / "grafana"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" > {record}.args\ncat > {record}.stdin\n')
    fake.chmod(0o755)
    component = Component("grafana", [str(fake), "server"], environ | {"GF_PATHS_DATA": str(data)},
                          None, lambda: True)  # fmt: skip
    reset_grafana_admin(component, Layout("dev", tmp_path))
    assert not Path(f"{record}.args").exists()  # first start: Grafana creates its admin
    (data / "grafana.db").write_bytes(b"SQLite format 3\0")
    reset_grafana_admin(component, Layout("dev", tmp_path))
    args = Path(f"{record}.args").read_text()
    assert (
        "cli --homepath /usr/share/grafana admin reset-admin-password --password-from-stdin" in args
    )
    assert Path(f"{record}.stdin").read_text() == secret.read_text()
    a.happened = f"first start: $__file{{}}; later: grafana {args.strip()} < the secret"
    a.blocked = True
