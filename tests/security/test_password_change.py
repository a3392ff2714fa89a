"""Finding 6, live: a changed database password takes effect at the next native `make up`, and
the old one stops working. Before, PostgreSQL's roles got their passwords only when the
cluster was created, so the old password kept working and the new one was refused.

One throwaway native dev stack (its own run root, every port free, 127.0.0.1), up three times:
with the first passwords; stopped, then up with new ones (PostgreSQL's data kept); then, still
running, up with a third set."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack import ROOT
from stack.native import running_of
from stack.native_config import port_variables, postgres_bin
from stack.processes import free_port, stop

pytestmark = pytest.mark.integration
UP_TIMEOUT = 600.0
WAIT = 60.0  # for the API and the exporter to connect with the new passwords


class Native:
    """`python -m stack up|down --env dev --runtime native` into a throwaway run root."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="stack-passwords-"))
        self.root.chmod(0o755)  # PostgreSQL (user postgres) keeps its data below
        self.dotenv = self.root / "dev.env"
        self.ports = {service: free_port() for service in port_variables()}
        self.environ = {
            **{k: v for k, v in os.environ.items() if not k.endswith("_PASSWORD")},
            "STACK_RUN_ROOT": str(self.root),
            "STACK_DOTENV": str(self.dotenv),
            **{port_variables()[s]: str(p) for s, p in self.ports.items()},
        }

    def up(self, **passwords: str) -> str:
        self.dotenv.write_text("".join(f"{k}={v}\n" for k, v in passwords.items()))
        self.dotenv.chmod(0o600)
        return self.run("up")

    def run(self, command: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "stack", command, "--env", "dev", "--runtime", "native"],
            cwd=ROOT, env=self.environ, capture_output=True, text=True, timeout=UP_TIMEOUT,
            check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"stack {command} failed:\n{done.stdout}{done.stderr}"
        return done.stdout

    def logs_in(self, role: str, password: str) -> bool:
        done = subprocess.run(
            [postgres_bin("psql"), "-w", "-h", "127.0.0.1", "-p", str(self.ports["postgres"]),
             "-U", role, "-d", "assistant", "-tAc", "SELECT 1"],
            env={**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5"},
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        return done.returncode == 0 and done.stdout.strip() == "1"

    def connected(self) -> tuple[bool, bool]:
        """(the API's /health/database answers 200, Prometheus reads pg_up 1), within WAIT."""
        api = f"http://127.0.0.1:{self.ports['api']}/health/database"
        query = urllib.parse.urlencode({"query": "pg_up"})
        prometheus = f"http://127.0.0.1:{self.ports['prometheus']}/api/v1/query?{query}"
        api_ok = exporter_ok = False
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and not (api_ok and exporter_ok):
            try:
                with urllib.request.urlopen(api, timeout=5) as answer:
                    api_ok = answer.status == 200
            except (OSError, urllib.error.HTTPError):
                api_ok = False
            try:
                with urllib.request.urlopen(prometheus, timeout=5) as answer:
                    result = json.load(answer)["data"]["result"]
                exporter_ok = bool(result) and result[0]["value"][1] == "1"
            except (OSError, ValueError, KeyError):
                exporter_ok = False
            time.sleep(0.5)
        return api_ok, exporter_ok

    def close(self) -> None:
        try:
            self.run("down")
        finally:  # a safety net: whatever the state still names, by PID
            state = self.root / "native-state.json"
            if state.exists():
                for entry in json.loads(state.read_text())["components"].values():
                    stop(running_of(entry), entry["stop_signal"])
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def native() -> Iterator[Native]:
    stack = Native()
    try:
        yield stack
    finally:
        stack.close()


def pair() -> dict[str, str]:
    """The three database passwords: the superuser's, the app's, the exporter's."""
    return {
        "POSTGRES_PASSWORD": secrets.token_urlsafe(24),
        "ASSISTANT_DATABASE_PASSWORD": secrets.token_urlsafe(24),
        "POSTGRES_EXPORTER_PASSWORD": secrets.token_urlsafe(24),
    }


def test_a_changed_database_password_works_at_the_next_up_and_the_old_one_no_longer_does(
    native: Native, attack
) -> None:
    stopped = attack(
        "old database passwords after a change, stack stopped, make up",
        "old refused; new works for the API and the exporter",
    )
    running = attack(
        "old database passwords after a change, stack running, make up",
        "restarted; old refused; new works for the API and the exporter",
    )
    first = pair()
    native.up(**first)
    assert native.logs_in("assistant", first["ASSISTANT_DATABASE_PASSWORD"])
    assert native.logs_in("postgres", first["POSTGRES_PASSWORD"])

    native.run("down")
    second = pair()
    native.up(**second)  # PostgreSQL's data kept: no initdb, no bootstrap
    seen = {
        "old": native.logs_in("assistant", first["ASSISTANT_DATABASE_PASSWORD"]),
        "new": native.logs_in("assistant", second["ASSISTANT_DATABASE_PASSWORD"]),
        "old superuser": native.logs_in("postgres", first["POSTGRES_PASSWORD"]),
        "new superuser": native.logs_in("postgres", second["POSTGRES_PASSWORD"]),
        "old exporter": native.logs_in("postgres_exporter", first["POSTGRES_EXPORTER_PASSWORD"]),
        "new exporter": native.logs_in("postgres_exporter", second["POSTGRES_EXPORTER_PASSWORD"]),
    }
    seen["api, exporter connected"] = all(native.connected())
    stopped.happened = ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in seen.items())
    assert seen == {"old": False, "new": True, "old superuser": False, "new superuser": True,
                    "old exporter": False, "new exporter": True,
                    "api, exporter connected": True}  # fmt: skip
    stopped.blocked = True

    third = pair()
    output = native.up(**third)
    assert "the secrets changed since the dev stack started: restarting it" in output
    seen = {
        "old": native.logs_in("assistant", second["ASSISTANT_DATABASE_PASSWORD"]),
        "new": native.logs_in("assistant", third["ASSISTANT_DATABASE_PASSWORD"]),
        "new superuser": native.logs_in("postgres", third["POSTGRES_PASSWORD"]),
        "api, exporter connected": all(native.connected()),
    }
    running.happened = ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in seen.items())
    assert seen == {"old": False, "new": True, "new superuser": True,
                    "api, exporter connected": True}, output  # fmt: skip
    running.blocked = True
