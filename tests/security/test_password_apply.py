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
from stack.postgres_roles import roles_sql
from tests.service.backends import free_port, postgres_bin_dir

TIMEOUT = 60


class Cluster:
    """A PostgreSQL data directory as the postgres image leaves it: superuser ``assistant``
    (compose.yaml's POSTGRES_USER), trust on the socket, scram-sha-256 over TCP."""

    def __init__(self, root: Path) -> None:
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
        self.run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "assistant",
                 "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync",
                 "--no-instructions")  # fmt: skip

    def run(self, *argv: str, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=TIMEOUT, check=False,
            user=self.user.pw_uid if self.user else None, cwd=self.root,
            env={**os.environ, "PGPORT": str(self.port), **env},
        )  # fmt: skip
        assert done.returncode == 0 or not check, done.stdout + done.stderr
        return done

    def pg_ctl(self, action: str, listen: str = "") -> None:
        options = f"-c listen_addresses='{listen}' -k {self.sockets}"
        log = str(self.sockets / "server.log")  # not our pipes: the server outlives pg_ctl
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-s", "-m", "fast",
                 "-l", log, "-o", options, action)  # fmt: skip

    def sql(self, statement: str) -> None:
        self.run(str(self.bin / "psql"), "-h", str(self.sockets), "-U", "assistant", "-d",
                 "postgres", "-v", "ON_ERROR_STOP=1", "-c", statement)  # fmt: skip

    def logs_in(self, role: str, password: str) -> bool:
        done = self.run(
            str(self.bin / "psql"), "-w", "-h", "127.0.0.1", "-U", role, "-d", "postgres",
            "-tAc", "SELECT 1", check=False, PGPASSWORD=password,
        )  # fmt: skip
        return done.returncode == 0


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    root = Path(os.environ.get("TMPDIR", "/tmp")) / f"stack-entrypoint-{secrets.token_hex(4)}"
    root.mkdir(mode=0o755)
    made = None
    try:
        made = Cluster(root)
        yield made
    finally:
        if made is not None:
            made.run(str(made.bin / "pg_ctl"), "-D", str(made.data), "-m", "immediate", "stop",
                     check=False)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def test_postgres_entry_point_sets_changed_passwords_on_an_existing_cluster(
    cluster: Cluster, attack
) -> None:
    a = attack(
        "Compose: old POSTGRES_PASSWORD after a change, postgres restarted",
        "old refused, new accepted (postgres/entrypoint.sh)",
    )
    old = {"POSTGRES_PASSWORD": secrets.token_urlsafe(24),
           "POSTGRES_EXPORTER_PASSWORD": secrets.token_urlsafe(24)}  # fmt: skip
    new = {k: secrets.token_urlsafe(24) for k in old}
    cluster.pg_ctl("start")  # what the image's first start left: the roles, the old passwords
    cluster.sql(f"ALTER ROLE assistant PASSWORD '{old['POSTGRES_PASSWORD']}'")
    cluster.sql(
        f"CREATE ROLE postgres_exporter LOGIN PASSWORD '{old['POSTGRES_EXPORTER_PASSWORD']}'"
    )
    cluster.pg_ctl("stop")
    roles = cluster.root / "postgres_roles"
    roles.write_text(roles_sql(new))  # as `make up` writes it, after .env changed
    roles.chmod(0o644)
    handed = cluster.root / "handed-over"
    image = cluster.root / "docker-entrypoint.sh"
    image.write_text(f'#!/bin/sh\necho "$@" > {handed}\n')
    image.chmod(0o755)

    done = subprocess.run(
        [str(ROOT / "postgres" / "entrypoint.sh"), str(image), "postgres", "-c", "x=1"],
        capture_output=True, text=True, timeout=TIMEOUT, check=False, cwd=cluster.root,
        env={**os.environ, "PGDATA": str(cluster.data), "POSTGRES_USER": "assistant",
             "POSTGRES_ROLES_FILE": str(roles), "POSTGRES_SOCKET_DIR": str(cluster.sockets),
             "PGPORT": str(cluster.port), "PATH": f"{cluster.bin}:{os.environ['PATH']}"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert handed.read_text() == "postgres -c x=1\n"  # the image's entry point, unchanged

    cluster.pg_ctl("start", listen="127.0.0.1")
    seen = {
        "old": cluster.logs_in("assistant", old["POSTGRES_PASSWORD"]),
        "new": cluster.logs_in("assistant", new["POSTGRES_PASSWORD"]),
        "old exporter": cluster.logs_in("postgres_exporter", old["POSTGRES_EXPORTER_PASSWORD"]),
        "new exporter": cluster.logs_in("postgres_exporter", new["POSTGRES_EXPORTER_PASSWORD"]),
    }
    a.happened = ", ".join(f"{k}: {'accepted' if v else 'refused'}" for k, v in seen.items())
    assert seen == {"old": False, "new": True, "old exporter": False, "new exporter": True}
    a.blocked = True


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
