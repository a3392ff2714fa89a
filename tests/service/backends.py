"""Real PostgreSQL and Redis servers as plain child processes on 127.0.0.1 (no Docker).

Redis runs with the stack's own users (stack/redis_acl.py: its ACL file, with random
passwords), plus an ``admin`` for the tests' own housekeeping (FLUSHALL, CONFIG SET, INFO).

``Postgres`` and ``Redis`` start Debian's binaries on a free port with their data under a
private temporary directory. ``stop()`` signals the server by PID (bounded wait, then SIGKILL
of its process group) and ``start()`` brings it back on the same port and data directory, so
tests can cut a running application off its backends and reconnect it. Nothing here depends
on pytest; errors are ``BackendError`` with the exact fix (an apt command) or the log's tail.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg

from stack import redis_acl
from stack.native_postgres import initdb, secure_sockets
from stack.processes import free_port

HOST = "127.0.0.1"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
PROBE_TIMEOUT = 2.0
POSTGRES_APT = "apt-get install -y --no-install-recommends postgresql"
REDIS_APT = "apt-get install -y --no-install-recommends redis-server"

_PR_SET_PDEATHSIG = 1
try:
    _prctl: Callable[..., int] | None = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux/glibc: no parent-death signal
    _prctl = None


class BackendError(RuntimeError):
    """A backend could not be found, started or reached; the message says what to do."""


def postgres_bin_dir(base: Path = Path("/usr/lib/postgresql")) -> Path:
    """``<base>/<highest version>/bin`` holding initdb, postgres and pg_isready."""
    needed = ("initdb", "postgres", "pg_isready")
    found: list[tuple[tuple[int, ...], Path]] = []
    for bin_dir in base.glob("*/bin"):
        version = bin_dir.parent.name
        if re.fullmatch(r"\d+(\.\d+)*", version) and all((bin_dir / n).is_file() for n in needed):
            found.append((tuple(int(p) for p in version.split(".")), bin_dir))
    if not found:
        raise BackendError(
            f"PostgreSQL server binaries ({', '.join(needed)}) not found under"
            f" {base}/*/bin; install them with:  {POSTGRES_APT}"
        )
    return max(found)[1]


def redis_server_bin() -> str:
    """``redis-server`` from PATH (Debian: /usr/bin/redis-server)."""
    path = shutil.which("redis-server")
    if path is None:
        raise BackendError(f"redis-server not found on PATH; install it with:  {REDIS_APT}")
    return path


def _child_env() -> dict[str, str]:
    """The environment without libpq's PG* variables, in the C locale (stable messages)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", LANG="C")
    return env


def _die_with_parent(sig: int) -> Callable[[], None] | None:
    """A preexec_fn that has the kernel send ``sig`` to the child when this thread ends.

    Only from the main thread: the signal follows the thread that forked, so a server
    started from a worker thread would die with that thread.
    """
    if _prctl is None or threading.current_thread() is not threading.main_thread():
        return None
    prctl = _prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return preexec


_LIVE: set[Backend] = set()


@atexit.register
def _stop_all() -> None:
    """Safety net: stop every server still running when the interpreter exits."""
    for backend in list(_LIVE):
        with contextlib.suppress(Exception):
            backend.stop()


class Backend:
    """One server process: start/stop/restart on a fixed port and data directory."""

    name = "backend"
    stop_signal = signal.SIGTERM

    def __init__(self, root: Path | None = None, port: int | None = None) -> None:
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix=f"test-{self.name}-")) if root is None else root
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # mkdtemp gives 0700; a server user must traverse it
        self.port = free_port() if port is None else port
        self.log_path = self.root / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} pid={self.pid}>"

    @property
    def url(self) -> str:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        """The server's PID while it runs, else None."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "<no log>"

    # --- subclass hooks -----------------------------------------------------------------

    def _prepare(self) -> None:
        """One-time setup before the first start (e.g. initdb)."""

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _popen_kwargs(self) -> dict[str, object]:
        return {}

    def _ready(self) -> bool:
        """One readiness probe, bounded by PROBE_TIMEOUT: *this* process (not another
        server on the same port) accepts connections."""
        raise NotImplementedError

    # --- lifecycle -----------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start (or restart) the server and wait until it accepts connections; no-op if it
        runs. On failure the process is stopped and BackendError carries the log's tail."""
        if self.running:
            return
        self._prepare()
        argv = self._argv()
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start {time.strftime('%H:%M:%S')}: {' '.join(argv)}\n".encode())
            log.flush()
            proc = self._proc = subprocess.Popen(
                argv,
                cwd=self.root,
                env=_child_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent(self.stop_signal),
                **self._popen_kwargs(),  # type: ignore[arg-type]
            )
        _LIVE.add(self)
        started = time.monotonic()
        deadline = started + timeout
        for _ in range(2000):
            if not self.running:
                returncode = proc.returncode
                self.stop()
                raise BackendError(
                    f"{self.name} exited with {returncode} while starting"
                    f" (log {self.log_path}):\n{self.log_tail()}"
                )
            if self._ready():
                return
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        self.stop()
        raise BackendError(
            f"{self.name} on port {self.port} not ready after {time.monotonic() - started:.1f}s"
            f" (log {self.log_path}):\n{self.log_tail()}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the server by PID: ``stop_signal``, a bounded wait, then SIGKILL of its
        process group (and a second bounded wait). No-op if it is not running."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, self.stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)
        self._kill_group(proc)

    def kill(self) -> None:
        """Crash the server: SIGKILL its whole process group (no clean shutdown)."""
        if self._proc is not None:
            self._kill_group(self._proc)

    def _kill_group(self, proc: subprocess.Popen[bytes]) -> None:
        # The group also holds children that outlived the leader (postgres backends).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            return  # unkillable for now (D state): keep it for a later attempt
        # Reaped: forget the PID so that no later call can signal a reused one.
        self._proc = None
        _LIVE.discard(self)

    def close(self) -> None:
        """Stop the server and remove the data directory if this object created it."""
        self.stop()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)


class Postgres(Backend):
    """A throwaway cluster set up as the native runtime sets up its own
    (stack/native_postgres.py): superuser ``postgres`` with a random ``password`` (in ``url``
    and ``dsn``), scram-sha-256 for every connection, the socket directory 0700; TCP on
    127.0.0.1 only.

    When run as root the server runs as the ``postgres`` user (it refuses root).
    SIGINT is postgres' fast shutdown (SIGTERM would wait for clients to leave).
    """

    name = "postgres"
    stop_signal = signal.SIGINT

    def __init__(self, root: Path | None = None, port: int | None = None) -> None:
        self.bin_dir = postgres_bin_dir()
        self._user = self._server_user()
        super().__init__(root, port)
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.password = secrets.token_urlsafe(24)

    @staticmethod
    def _server_user() -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam("postgres")
        except KeyError:
            raise BackendError(
                f"running as root but there is no 'postgres' user; install with:  {POSTGRES_APT}"
            ) from None

    def __repr__(self) -> str:
        return f"<Postgres postgres@{HOST}:{self.port} pid={self.pid}>"  # not the password

    @property
    def url(self) -> str:
        """SQLAlchemy URL (asyncpg driver) of the ``postgres`` database, as the superuser."""
        return f"postgresql+asyncpg://postgres:{self.password}@{HOST}:{self.port}/postgres"

    @property
    def dsn(self) -> str:
        """libpq/asyncpg DSN of the ``postgres`` database, as the superuser."""
        return f"postgresql://postgres:{self.password}@{HOST}:{self.port}/postgres"

    def _popen_kwargs(self) -> dict[str, object]:
        if self._user is None:
            return {}
        return {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}

    def _prepare(self) -> None:
        user = self._user.pw_uid if self._user is not None else None
        group = self._user.pw_gid if self._user is not None else None
        secure_sockets(self.socket_dir, user, group)  # 0700, every start
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        if self._user is not None:
            os.chown(self.data_dir, self._user.pw_uid, self._user.pw_gid)
        try:
            result = initdb(str(self.bin_dir / "initdb"), self.data_dir, self.password, user, group)
        except subprocess.TimeoutExpired as exc:
            raise BackendError(f"initdb did not finish in time: {exc.output!r}") from None
        with self.log_path.open("a") as log:
            log.write(result.stdout + result.stderr)
        if result.returncode != 0:
            shutil.rmtree(self.data_dir, ignore_errors=True)  # a retry starts from scratch
            raise BackendError(f"initdb failed ({result.returncode}):\n{self.log_tail()}")

    def _argv(self) -> list[str]:
        return [
            str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
            "-k", str(self.socket_dir),
            "-c", f"listen_addresses={HOST}", "-c", "fsync=off", "-c", "shared_buffers=32MB",
        ]  # fmt: skip

    def _ready(self) -> bool:
        # postmaster.pid: line 1 is the PID, line 8 the status ("ready" once it accepts
        # connections); pg_isready alone could be answered by another server on the port.
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        if len(lines) < 8 or lines[0].strip() != str(self.pid) or lines[7].strip() != "ready":
            return False
        argv = [
            str(self.bin_dir / "pg_isready"), "-q", "-h", HOST, "-p", str(self.port),
            "-U", "postgres", "-d", "postgres", "-t", str(int(PROBE_TIMEOUT)),
        ]  # fmt: skip
        try:
            rc = subprocess.run(
                argv, env=_child_env(), capture_output=True, timeout=PROBE_TIMEOUT + 1
            ).returncode
        except subprocess.TimeoutExpired:
            return False
        return rc == 0  # 1: rejecting (starting up), 2: no response

    def reset_schema(self, timeout: float = 10.0) -> None:
        """Empty the ``postgres`` database: drop schema ``public`` (tables, sequences, types)
        and create it again. A lock held by a leftover connection fails it after 5 s."""

        async def reset() -> None:
            conn = await asyncpg.connect(self.dsn, timeout=PROBE_TIMEOUT)
            try:
                await conn.execute(
                    "SET lock_timeout = '5s'; DROP SCHEMA IF EXISTS public CASCADE;"
                    " CREATE SCHEMA public;"
                )
            finally:
                await conn.close(timeout=PROBE_TIMEOUT)

        try:
            asyncio.run(asyncio.wait_for(reset(), timeout))
        except asyncpg.LockNotAvailableError as exc:
            raise BackendError(
                f"could not reset schema public: {exc}. A connection from an earlier test still"
                " holds a lock; dispose engines / close connections at the end of each test."
            ) from None


ADMIN = "admin"  # the tests' own Redis user: every command, every key


class Redis(Backend):
    """redis-server without persistence (``--save ''``, no AOF): a restart empties it.

    Its users are the stack's (``redis_acl.RULES``: ``default`` off, ``assistant``,
    ``redis_exporter``, ``healthcheck``), from the ACL file the stack renders, with random
    passwords (``.passwords``), and ``admin``, whose ``command()`` the tests' helpers use.
    """

    name = "redis"
    stop_signal = signal.SIGTERM

    def __init__(self, root: Path | None = None, port: int | None = None) -> None:
        self.binary = redis_server_bin()
        super().__init__(root, port)
        self.passwords = redis_acl.users(
            {
                redis_acl.APP_VARIABLE: secrets.token_urlsafe(32),
                redis_acl.EXPORTER_VARIABLE: secrets.token_urlsafe(32),
            }
        )
        self.passwords[ADMIN] = secrets.token_urlsafe(32)
        self.acl_path = self.root / "users.acl"

    @property
    def url(self) -> str:
        """redis-py URL of database 0, as the app's user (``assistant``)."""
        return redis_acl.app_url(self.passwords[redis_acl.APP_USER], f"{HOST}:{self.port}")

    def url_of(self, user: str) -> str:
        """redis-py URL of database 0 as ``user``."""
        return f"redis://{user}:{self.passwords[user]}@{HOST}:{self.port}/0"

    def _prepare(self) -> None:
        text = redis_acl.acl_file(self.passwords, extra={ADMIN: "on ~* &* +@all"})
        self.acl_path.unlink(missing_ok=True)
        descriptor = os.open(self.acl_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as f:
            f.write(text)

    def _argv(self) -> list[str]:
        return [
            self.binary, "--port", str(self.port), "--bind", HOST,
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", str(self.root),
            "--aclfile", str(self.acl_path),
        ]  # fmt: skip

    def command(self, command: bytes, timeout: float = PROBE_TIMEOUT) -> bytes | None:
        """``redis_command`` as ``admin``."""
        return redis_command(self.port, command, timeout, auth=(ADMIN, self.passwords[ADMIN]))

    def _ready(self) -> bool:
        # INFO answers -LOADING while a dataset loads; process_id tells our server from
        # another one that holds the port.
        reply = self.command(b"INFO server")
        return reply is not None and f"process_id:{self.pid}\r\n".encode() in reply

    def flushall(self) -> None:
        """Delete every key of every database."""
        reply = self.command(b"FLUSHALL")
        if reply != b"+OK":
            raise BackendError(f"FLUSHALL on port {self.port} answered {reply!r}")


def resp(*words: str | bytes) -> bytes:
    """A command as a RESP array: any byte in an argument (a password) is safe."""
    parts = [b"*%d\r\n" % len(words)]
    for word in words:
        data = word.encode() if isinstance(word, str) else word
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def redis_command(
    port: int,
    command: bytes,
    timeout: float = PROBE_TIMEOUT,
    auth: tuple[str, str] | None = None,
) -> bytes | None:
    """Send an inline command to ``HOST:port`` (after ``AUTH user password``, with ``auth``);
    its reply (a status or error line such as ``+OK``, or a bulk string's payload), or None
    if nothing answered in ``timeout``. A refused ``AUTH`` is the reply."""
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall((resp("AUTH", *auth) if auth else b"") + command + b"\r\n")
            data = b""
            if auth:
                for _ in range(64):
                    if b"\r\n" in data:
                        break
                    sock.settimeout(max(0.01, deadline - time.monotonic()))
                    chunk = sock.recv(65536)
                    if not chunk:
                        return None
                    data += chunk
                head, _, data = data.partition(b"\r\n")
                if head != b"+OK":
                    return head
            for _ in range(64):  # replies used here are a few KB at most
                head, sep, rest = data.partition(b"\r\n")
                if sep and not head.startswith(b"$"):
                    return head
                if sep and int(head[1:]) < 0:
                    return None  # $-1: nil
                if sep and len(rest) >= int(head[1:]) + 2:
                    return rest[: int(head[1:])]
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = sock.recv(65536)
                if not chunk:
                    return None
                data += chunk
    except (OSError, ValueError):
        return None
    return None
