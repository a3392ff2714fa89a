"""Finding 1, Redis: on 127.0.0.1 it answered anyone, so any local user (or any container on
the network) could write a session key and be logged in as any user.

Redis runs as the stack starts it: the prod Compose service's command made native
(stack/native_config.py: Debian's redis-server with ``--aclfile`` on the file `make up`
renders, stack/redis_acl.py), with random passwords, on a free port; redis_exporter likewise,
with its user and password file. Then, on raw sockets and with redis-py:

- no password: every command is ``NOAUTH``, the session key is neither read nor written;
- the exporter's user (it scrapes: ``redis_up 1``) cannot write a key, read one, change the
  configuration, flush, or cut other clients off;
- the app's user cannot run an administrative command (``CONFIG SET``, ``SHUTDOWN``, ``ACL``,
  ``REPLICAOF``, ``FLUSHALL``, ``MONITOR``, ``KEYS``) nor touch a key outside
  ``assistant:*``;
- the healthcheck's user may only PING (the Compose healthcheck's command, run here, too);
- after a password change and a restart, the old password is refused.

Without the fix Redis had no user: the first attack wrote the session key.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from stack import redis_acl
from stack.native import write_private
from stack.native_config import Component, Layout, addressed_secrets, components, ports
from stack.processes import Running, free_port, launch, stop
from stack.project import Project
from stack.secrets import EXAMPLE, prepare
from stack.settings import read_env_file
from tests.service.backends import resp

from .conftest import Attack

AttackFn = Callable[[str, str], Attack]
ENV = "prod"
START_TIMEOUT = 15.0
NO_RETRY = Retry(NoBackoff(), 0)  # a refusal is the answer: no retry, no backoff
SESSION = "assistant:session:" + hashlib.sha256(b"a token the attacker made up").hexdigest()


@dataclass
class Stack:
    layout: Layout
    project: Project
    redis: Component
    exporter: Component
    running: dict[str, Running]

    @property
    def port(self) -> int:
        assert self.redis.port is not None
        return self.redis.port

    def password(self, user: str) -> str:
        files = self.layout.run_dir / "secrets"
        return redis_acl.users(redis_acl.read_passwords(files))[user]

    def client(self, user: str, password: str | None = None) -> redis.Redis:
        password = self.password(user) if password is None else password
        return redis.Redis(
            port=self.port, username=user, password=password, socket_timeout=5,
            decode_responses=True, retry=NO_RETRY,
        )  # fmt: skip

    def start(self, component: Component) -> None:
        for path in component.data:
            path.mkdir(parents=True, exist_ok=True)
        log = self.layout.log_dir / f"{component.name}.log"
        self.running[component.name] = launch(component.argv, log, component.env)
        deadline = time.monotonic() + START_TIMEOUT
        while not answers(component):
            running = self.running[component.name]
            if not running.alive() or time.monotonic() > deadline:
                pytest.fail(f"{component.name} did not start: {log.read_text()[-2000:]}")
            time.sleep(0.05)

    def stop(self, name: str) -> None:
        stop(self.running.pop(name))


def answers(component: Component) -> bool:
    """Redis answers at all (PONG, or a refusal: the attacks decide which), the exporter
    its probe."""
    if component.name != "redis":
        return component.probe()
    try:
        return raw(component.port or 0, b"PING\r\n")[0][:1] in (b"+", b"-")
    except OSError:
        return False


def render(layout: Layout, **passwords: str) -> None:
    """What `make up` writes before anything starts: the secrets (the ACL file among them),
    then the native copies of those that name Redis's address."""
    values = read_env_file(EXAMPLE) | passwords
    prepare(ENV, values, layout.run_dir)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    layout = Layout(ENV, tmp_path_factory.mktemp("redis-auth"))
    render(layout, REDIS_PASSWORD=secrets.token_urlsafe(32),
           REDIS_EXPORTER_PASSWORD=secrets.token_urlsafe(32))  # fmt: skip
    project = Project(ENV, layout.run_dir)
    local = ports(project, {"REDIS_PORT": str(free_port()),
                            "REDIS_EXPORTER_PORT": str(free_port())})  # fmt: skip
    write_private(addressed_secrets(layout, local))
    made = {c.name: c for c in components(project, layout, local, "postgresql+asyncpg://x")}
    found = Stack(layout, project, made["redis"], made["redis-exporter"], {})
    try:
        found.start(found.redis)
        found.start(found.exporter)
        yield found
    finally:
        for name in list(found.running):
            found.stop(name)


def raw(port: int, *commands: bytes) -> list[bytes]:
    """Each command's first reply line, on one connection without a password."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"".join(commands))
        data = b""
        for _ in range(64):  # bounded
            if data.count(b"\r\n") >= len(commands):
                break
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n")[: len(commands)]


def refusal(call: Callable[[], object]) -> str:
    """The error code a redis-py call ends with (NOPERM, NOAUTH, WRONGPASS: redis-py keeps
    the code in the class, the rest in the message), or what it returned when not refused."""
    try:
        result = call()
    except redis.exceptions.NoPermissionError:
        return "NOPERM"
    except redis.exceptions.AuthenticationError as exc:  # no password: NOAUTH, or HELLO's
        return "WRONGPASS" if "invalid username-password" in str(exc) else "NOAUTH"
    except redis.RedisError as exc:
        return f"{type(exc).__name__}: {exc}"
    return f"done: {result!r}"


def test_without_a_password_no_session_key_is_read_or_written(
    stack: Stack, attack: AttackFn
) -> None:
    a = attack(
        "write a session key without a password (log in as anyone)",
        "NOAUTH for every command; the key not written",
    )
    replies = raw(stack.port, resp("SET", SESSION, "1"), resp("GET", SESSION), b"PING\r\n",
                  resp("AUTH", "default", ""), resp("AUTH", "anything"))  # fmt: skip
    anonymous = refusal(lambda: redis.Redis(port=stack.port, retry=NO_RETRY).set(SESSION, 1))
    written = replies[1].startswith(b"$1")  # GET found what SET wrote
    a.happened = f"{[r.decode()[:40] for r in replies]}, redis-py {anonymous}, key: {written}"
    assert all(r.startswith(b"-NOAUTH") for r in replies[:3]), replies
    assert all(r.startswith(b"-WRONGPASS") for r in replies[3:]), replies
    assert anonymous == "NOAUTH" and not stack.client(redis_acl.APP_USER).exists(SESSION)
    a.blocked = True


def test_a_wrong_password_is_refused(stack: Stack, attack: AttackFn) -> None:
    a = attack("log in as each user with a guessed password", "WRONGPASS; the real one works")
    users = (redis_acl.APP_USER, redis_acl.EXPORTER_USER, redis_acl.HEALTHCHECK_USER)
    found = {user: refusal(stack.client(user, "change-me-redis").ping) for user in users}
    real = {user: refusal(stack.client(user).ping) for user in users}
    a.happened = ", ".join(f"{u}: {r}" for u, r in found.items()) + f"; real: {real}"
    assert set(found.values()) == {"WRONGPASS"}
    assert set(real.values()) == {"done: True"}
    a.blocked = True


EXPORTER_ATTEMPTS: dict[str, Callable[[redis.Redis], object]] = {
    "SET a session key": lambda r: r.set(SESSION, "1"),
    "GET a session key": lambda r: r.get(SESSION),
    "CONFIG SET": lambda r: r.config_set("maxmemory", "1"),
    "FLUSHALL": lambda r: r.flushall(),
    "CLIENT KILL": lambda r: r.execute_command("CLIENT", "KILL", "ID", "1"),
    "CLIENT PAUSE": lambda r: r.execute_command("CLIENT", "PAUSE", "60000"),
    "SLOWLOG RESET": lambda r: r.execute_command("SLOWLOG", "RESET"),
    "EVAL a write": lambda r: r.eval("return redis.call('SET', KEYS[1], '1')", 1, SESSION),
}


def test_the_exporters_user_only_reads_the_servers_state(stack: Stack, attack: AttackFn) -> None:
    a = attack(
        "as the exporter's user: write or read a key, CONFIG SET, FLUSHALL, CLIENT KILL, ...",
        "NOPERM for each; the exporter still scrapes (redis_up 1)",
    )
    client = stack.client(redis_acl.EXPORTER_USER)
    found = {name: refusal(lambda t=t: t(client)) for name, t in EXPORTER_ATTEMPTS.items()}
    with urllib.request.urlopen(f"{stack.exporter.url}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    scraped = "redis_up 1" in metrics.splitlines()
    a.happened = ", ".join(f"{k} {v}" for k, v in found.items()) + f"; redis_up 1: {scraped}"
    assert set(found.values()) == {"NOPERM"}, found
    assert scraped and 'redis_exporter_last_scrape_error{err=""} 0' in metrics
    a.blocked = True


APP_ATTEMPTS: dict[str, Callable[[redis.Redis], object]] = {
    "CONFIG SET": lambda r: r.config_set("dir", "/tmp"),
    "CONFIG GET": lambda r: r.config_get("*"),
    "SHUTDOWN": lambda r: r.execute_command("SHUTDOWN", "NOSAVE"),
    "ACL SETUSER": lambda r: r.acl_setuser("intruder", enabled=True, nopass=True),
    "ACL LIST": lambda r: r.acl_list(),
    "FLUSHALL": lambda r: r.flushall(),
    "REPLICAOF": lambda r: r.execute_command("REPLICAOF", "127.0.0.1", "1"),
    "MONITOR": lambda r: r.execute_command("MONITOR"),
    "KEYS": lambda r: r.keys("*"),
    "SET outside assistant:*": lambda r: r.set("other:key", "1"),
}


def test_the_apps_user_runs_no_administrative_command(stack: Stack, attack: AttackFn) -> None:
    a = attack(
        "as the app's user: CONFIG SET, SHUTDOWN, ACL, REPLICAOF, FLUSHALL, other keys",
        "NOPERM for each; its own keys work",
    )
    client = stack.client(redis_acl.APP_USER)
    found = {name: refusal(lambda t=t: t(client)) for name, t in APP_ATTEMPTS.items()}
    own = client.set("assistant:probe", "1") and client.delete("assistant:probe") == 1
    a.happened = ", ".join(f"{k} {v}" for k, v in found.items()) + f"; own keys: {own}"
    assert set(found.values()) == {"NOPERM"}, found
    assert own and stack.running["redis"].alive()
    a.blocked = True


def test_the_healthcheck_user_may_only_ping(stack: Stack, attack: AttackFn) -> None:
    a = attack("as the healthcheck's user: GET or SET a session key", "NOPERM; PING answers")
    client = stack.client(redis_acl.HEALTHCHECK_USER)
    found = {
        "GET": refusal(lambda: client.get(SESSION)),
        "SET": refusal(lambda: client.set(SESSION, "1")),
        "INFO": refusal(client.info),
    }
    a.happened = ", ".join(f"{k} {v}" for k, v in found.items()) + f"; PING {client.ping()}"
    assert set(found.values()) == {"NOPERM"}
    a.blocked = True


def test_the_native_probe_logs_in_as_the_healthcheck_user(stack: Stack) -> None:
    assert stack.redis.probe()


def test_the_compose_healthcheck_logs_in_as_the_healthcheck_user(stack: Stack) -> None:
    """The Compose healthcheck's own command, its secret's path mapped onto the file `make up`
    writes, its address onto this Redis: healthy; and unhealthy with a wrong password."""
    test = stack.project.services()["redis"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL" and "--user healthcheck" in test[1]
    secret = f"/run/secrets/{redis_acl.HEALTHCHECK_FILE}"
    assert secret in test[1] and "REDISCLI_AUTH=" in test[1]  # not in redis-cli's arguments
    assert shutil.which("redis-cli"), "redis-cli (Debian package redis-tools)"
    wrong = stack.layout.runs / "wrong-password"
    wrong.write_text("change-me\n")
    answers = []
    for path in (stack.layout.run_dir / "secrets" / redis_acl.HEALTHCHECK_FILE, wrong):
        local = test[1].replace("$$", "$").replace(secret, str(path))  # as Compose runs it
        local = local.replace("-h 127.0.0.1", f"-h 127.0.0.1 -p {stack.port}")
        done = subprocess.run(["sh", "-c", local], capture_output=True, timeout=10, check=False)
        answers.append(done.returncode)
    assert answers == [0, 1]


def test_the_acl_file_holds_no_password(stack: Stack) -> None:
    secrets_dir = stack.layout.run_dir / "secrets"
    text = (secrets_dir / redis_acl.ACL_FILE).read_text()
    passwords = redis_acl.users(redis_acl.read_passwords(secrets_dir))
    assert all(p not in text for p in passwords.values())
    assert "user default off" in text
    assert os.stat(secrets_dir).st_mode & 0o077 == 0  # the directory is the owner's only


def test_a_changed_password_takes_effect_at_the_next_start(stack: Stack, attack: AttackFn) -> None:
    a = attack(
        "the old REDIS_PASSWORD after a change, Redis restarted (make up)",
        "old refused (WRONGPASS), new accepted",
    )
    old = stack.password(redis_acl.APP_USER)
    exporter = stack.password(redis_acl.EXPORTER_USER)
    new = secrets.token_urlsafe(32)
    render(stack.layout, REDIS_PASSWORD=new, REDIS_EXPORTER_PASSWORD=exporter)
    stack.stop("redis")
    stack.start(stack.redis)
    assert stack.redis.probe()  # with the new healthcheck password
    before = refusal(stack.client(redis_acl.APP_USER, old).ping)
    after = refusal(stack.client(redis_acl.APP_USER, new).ping)
    a.happened = f"old: {before}, new: {after}"
    assert (before, after) == ("WRONGPASS", "done: True")
    a.blocked = True
