"""`make backup` and `make restore`: the HA topology's long-term store (VictoriaMetrics) into a
new folder and back, with Debian's vmbackup and vmrestore (package victoria-metrics).

Natively, a backup is a snapshot made through the store's HTTP API (with the monitoring user's
credentials: the store asks for them in stage and prod), vmbackup from that snapshot, and the
snapshot deleted again. A restore needs the store stopped: it stops that one component by PID,
runs vmrestore into its data directory, gives the data back to the components' account
(stack/native_user.py) and starts what is not running, as `make up` does.

On Compose the same binaries run in one-off containers of the `victoriametrics` service, its
volume mounted: its local image is Debian's package, which ships them (the local engine's
images, stack/images.py). vmbackup makes and deletes the snapshot itself there
(``-snapshot.createURL``, given in its environment with the credentials, never in argv).

``backup_store`` and ``restore_store`` hold the work; the tests drive them on a store of their
own.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import ROOT, compose, native
from .native_config import path_map, translate
from .native_user import account, own
from .processes import log_tail, stop
from .project import Project
from .secrets import run_root
from .settings import StackError, check_environment
from .webauth import USER, authorization

SERVICE = "victoriametrics"
DATA_FLAG = "-storageDataPath"
DATA = "/storage"  # its data in the container (compose/compose.ha.yaml)
MOUNT = "/backup"  # the folder in a one-off container
PASSWORD = "monitoring_password"  # the monitoring user's, in .run/<env>/secrets/
COMPLETE = "backup_complete.ignore"  # what vmbackup writes last
# their own metrics server on a port the kernel picks: never :8420/:8421 on every address
LISTEN = "-httpListenAddr=127.0.0.1:0"
TIMEOUT = 3600.0
PROGRESS_EVERY = 5.0

Say = Callable[[str], None]


@dataclass(frozen=True)
class Store:
    """A running store: its URL, its data directory, what its clients send."""

    url: str
    data: Path
    headers: dict[str, str] = field(default_factory=dict)


# ---- the work: a store to a folder and back ---------------------------------------------


def backup_store(store: Store, folder: Path, say: Say = print) -> Path:
    """A snapshot of ``store`` into the new ``folder`` (removed again if vmbackup fails)."""
    folder = new_folder(folder)
    try:
        name = str(_api(store, "/snapshot/create")["snapshot"])
        say(f"backup: snapshot {name} of {store.url}")
        try:
            argv = ["vmbackup", f"{DATA_FLAG}={store.data}", f"-snapshotName={name}",
                    f"-dst=fs://{folder}", LISTEN]  # fmt: skip
            run(argv, folder, say)
        finally:
            _api(store, "/snapshot/delete", snapshot=name)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    say(f"backup: {folder} ({size(folder) / 1e6:.1f} MB); snapshot {name} deleted")
    return folder


def restore_store(folder: Path, data: Path, say: Say = print) -> None:
    """The backup in ``folder`` into ``data``, which no store may hold open; what ``data``
    held before is replaced."""
    folder = backup_folder(folder)
    if locked(data):
        raise StackError(f"VictoriaMetrics still runs on {data}: stop it before a restore")
    data.mkdir(parents=True, exist_ok=True)
    say(f"restore: {folder} into {data}")
    run(["vmrestore", f"-src=fs://{folder}", f"{DATA_FLAG}={data}", LISTEN], data, say)


def new_folder(folder: Path) -> Path:
    folder = folder.absolute()
    if folder.exists():
        raise StackError(f"{folder} exists: a backup goes into a new folder (DIR=<new folder>)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.mkdir(mode=0o700)
    return folder


def backup_folder(folder: Path) -> Path:
    folder = folder.absolute()
    if not folder.is_dir():
        raise StackError(f"{folder}: no such folder (DIR=<a folder make backup wrote>)")
    if not (folder / COMPLETE).is_file():
        raise StackError(f"{folder} holds no complete backup (no {COMPLETE}, vmbackup's last file)")
    return folder


def locked(data: Path) -> bool:
    """A store holds ``data`` (its flock on flock.lock)."""
    try:
        descriptor = os.open(data / "flock.lock", os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)
    return False


def _api(store: Store, path: str, **params: str) -> dict[str, Any]:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    request = urllib.request.Request(f"{store.url}{path}{query}", headers=store.headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            found: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as error:
        who = f"the {USER} user's credentials" if store.headers else "no credentials"
        raise StackError(f"{store.url}{path}: HTTP {error.code} (sent {who})") from None
    except (OSError, ValueError) as error:
        raise StackError(f"{store.url}{path}: {error}") from None
    if found.get("status") != "ok":
        raise StackError(f"{store.url}{path}: {found}")
    return found


def run(argv: list[str], grows: Path, say: Say, environ: dict[str, str] | None = None) -> None:
    """``argv`` to its end, a progress line every few seconds (``grows``: where its output
    lands); on failure, its log's tail."""
    program = shutil.which(argv[0])
    if program is None:
        raise StackError(f"{argv[0]} is not installed (Debian package victoria-metrics)")
    name = Path(argv[0]).name
    begin = time.monotonic()
    with tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log") as log:
        proc = subprocess.Popen([program, *argv[1:]], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=environ)  # fmt: skip
        shown = begin
        while proc.poll() is None:
            now = time.monotonic()
            if now - begin > TIMEOUT:
                proc.kill()
                proc.wait()
                raise StackError(f"{name} still ran after {TIMEOUT:g} s: stopped")
            if now - shown >= PROGRESS_EVERY:
                say(f"  {name}: {size(grows) / 1e6:.1f} MB after {now - begin:.0f} s")
                shown = now
            time.sleep(0.2)
        if proc.returncode != 0:
            raise StackError(f"{name} failed (exit {proc.returncode}):\n{log_tail(log.name)}")
    say(f"  {name}: done in {time.monotonic() - begin:.1f} s")


def size(tree: Path) -> int:
    total = 0
    for top, _, files in os.walk(tree):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(top, name)).st_size
    return total


# ---- make backup, make restore -------------------------------------------------------------


def default_folder(env: str) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return run_root() / "backups" / check_environment(env) / stamp


def headers(run_dir: Path) -> dict[str, str]:
    """The monitoring user's Authorization, from the secret file (none before `make up`)."""
    path = run_dir / "secrets" / PASSWORD
    return {"Authorization": authorization(path.read_text().strip())} if path.is_file() else {}


def store_service(model: Project) -> dict[str, Any]:
    """The store's Compose service; a refusal where the topology has none."""
    services = model.services()
    if SERVICE not in services and not model.ha:
        raise StackError(
            f"ENV={model.env} in the single topology has no long-term store: VictoriaMetrics "
            "runs in the ha topology (TOPOLOGY=ha)"
        )
    if SERVICE not in services:
        raise StackError(f"the ha topology's Compose files have no `{SERVICE}` service")
    return services[SERVICE]


def container_data(service: dict[str, Any]) -> str:
    """Its data directory in the container: its command's -storageDataPath, else /storage."""
    for arg in service.get("command") or []:
        flag, _, value = str(arg).partition("=")
        if flag.lstrip("-") == DATA_FLAG.lstrip("-") and value:
            return value
    return DATA


def backup(env: str, topology: str | None, folder: Path | None, runtime: str) -> int:
    folder = folder or default_folder(env)
    if runtime == "native":
        store, _, model = _native(env, topology)
        if store is None:
            raise StackError(
                f"{SERVICE} of the {env} stack is not running natively: a backup reads a "
                f"snapshot of the running store (make up ENV={env} TOPOLOGY={model.topology})"
            )
        backup_store(store, folder, say)
    else:
        _compose_backup(env, topology, folder)
    print(f"make restore ENV={env} DIR={folder.absolute()} brings it back")
    return 0


def restore(env: str, topology: str | None, folder: Path | None, runtime: str) -> int:
    if folder is None:
        raise StackError("which backup? DIR=<a folder make backup wrote>")
    folder = backup_folder(folder)
    if runtime != "native":
        return _compose_restore(env, topology, folder)
    store, data, model = _native(env, topology)
    where = native.layout(env)
    state = native.load_state(where)
    if store is not None:
        entry = state["components"][SERVICE]
        say(f"restore: stopping {SERVICE} (pid {entry['pid']}) until it is restored")
        stop(native.running_of(entry), entry.get("stop_signal", 15))
        del state["components"][SERVICE]
        native.save_state(where, state)
    try:
        restore_store(folder, data, say)
    except StackError as error:
        raise StackError(
            f"{error}\n{SERVICE} is not running: make restore again, or make up ENV={env} starts "
            "it on what the data directory holds"
        ) from None
    own(data, account())  # the components' account's, as make up leaves it
    if state["env"] != env or not native.alive_components(state):
        print(f"restored into {data}; make up ENV={env} TOPOLOGY={model.topology} starts it")
        return 0
    say(f"restore: starting {SERVICE} again (make up: what is not running)")
    return native.up(env, model.topology)


def say(line: str) -> None:
    print(line, flush=True)


def _native(env: str, topology: str | None) -> tuple[Store | None, Path, Project]:
    """The running store (None when it is not running), its data directory, the project in
    the running stack's topology (else the one asked for)."""
    where = native.layout(env)
    state = native.load_state(where)
    running = state["env"] == env and bool(native.alive_components(state))
    model = Project(env, where.run_dir, topology=state.get("topology") if running else topology)
    service = store_service(model)
    data = Path(translate(container_data(service), path_map(service, where), str))
    entry = state["components"].get(SERVICE) if running else None
    if entry is None or not native.running_of(entry).alive():
        return None, data, model
    return Store(entry["url"], data, headers(where.run_dir)), data, model


# ---- on Compose ----------------------------------------------------------------------------


def one_off(tool: str, folder: Path, data: str, read_only: bool, *args: str) -> list[str]:
    """`docker compose run` of ``tool`` (Debian's, in the service's local image) with the
    folder at /backup and the store's volume as the service mounts it."""
    mode = ":ro" if read_only else ""
    return ["run", "--rm", "--no-deps", "-T", "--volume", f"{folder}:{MOUNT}{mode}",
            "--entrypoint", f"/usr/bin/{tool}", *args, SERVICE,
            f"{DATA_FLAG}={data}", LISTEN]  # fmt: skip


def backup_command(folder: Path, service: dict[str, Any]) -> list[str]:
    """vmbackup, the snapshot URL from its environment (snapshot_createURL)."""
    return [*one_off("vmbackup", folder, container_data(service), False, "--env",
                     "snapshot_createURL"), "-envflag.enable", f"-dst=fs://{MOUNT}"]  # fmt: skip


def restore_command(folder: Path, service: dict[str, Any]) -> list[str]:
    return [*one_off("vmrestore", folder, container_data(service), True), f"-src=fs://{MOUNT}"]


Model = tuple[compose.Target, Project, dict[str, Any]]


def _compose_model(env: str, topology: str | None) -> Model:
    where = compose.target(start=False)  # a clear refusal without an engine
    model = compose.project(env, run_root() / check_environment(env), where, topology)
    service = store_service(model)
    if not where.local:
        raise StackError(
            f"on a Docker engine `{SERVICE}` runs the pinned upstream image, which has no "
            "vmbackup/vmrestore: back up on the local engine (RUNTIME=compose without Docker), "
            "or natively (docs/scale.md)"
        )
    done = _docker(model, where, ["ps", "--quiet", SERVICE], capture=True)
    if not done.stdout.strip():
        raise StackError(f"{SERVICE} of the {env} stack is not running on Compose (make up)")
    return where, model, service


def _docker(
    model: Project, where: compose.Target, args: list[str], capture: bool = False,
    extra: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:  # fmt: skip
    command = [*compose.compose_command(), *model.compose_args(), *args]
    environ = model.environ({**os.environ, **where.environ, **(extra or {})})
    return subprocess.run(command, cwd=ROOT, env=environ, capture_output=capture, text=True,
                          timeout=TIMEOUT, check=False)  # fmt: skip


def _compose_backup(env: str, topology: str | None, folder: Path) -> None:
    where, model, service = _compose_model(env, topology)
    folder = new_folder(folder)
    owner = str(service.get("user") or "")
    if os.geteuid() == 0 and owner[:1].isdigit():  # the image's user writes the folder
        uid, _, gid = owner.partition(":")
        os.chown(folder, int(uid), int(gid or uid))
    secret = model.run_dir / "secrets" / PASSWORD
    password = secret.read_text().strip() if secret.is_file() else ""
    quoted = urllib.parse.quote(password, safe="")
    user = f"{USER}:{quoted}@" if password else ""
    url = f"http://{user}{SERVICE}:{model.exposed_port(SERVICE)}/snapshot/create"
    say(f"backup: vmbackup in a one-off {SERVICE} container into {folder}")
    done = _docker(model, where, backup_command(folder, service), capture=True,
                   extra={"snapshot_createURL": url})  # fmt: skip
    if done.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        for secret_text in (password, quoted) if password else ():
            tail = tail.replace(secret_text, "***")
        raise StackError(f"vmbackup failed (exit {done.returncode}):\n{tail}")
    say(f"backup: {folder} ({size(folder) / 1e6:.1f} MB)")


def _compose_restore(env: str, topology: str | None, folder: Path) -> int:
    where, model, service = _compose_model(env, topology)
    steps = [("stopping", ["stop", SERVICE]), ("vmrestore", restore_command(folder, service)),
             ("starting", ["up", "--detach", "--wait", "--no-deps", SERVICE])]  # fmt: skip
    for what, args in steps:
        say(f"restore: {what} {SERVICE}")
        done = _docker(model, where, args)
        if done.returncode != 0:
            raise StackError(f"restore: {what} failed (exit {done.returncode})")
    return 0
