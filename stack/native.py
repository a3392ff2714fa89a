"""The native runtime: the stack as local processes on 127.0.0.1, from Debian's packages
(`make up|down|status|logs|clean RUNTIME=native`). What runs, and how, comes from the Compose
files (native_config.py); this module installs, starts, waits, stops and reports."""

from __future__ import annotations

import json
import pwd
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from . import ROOT, apt, packages, webauth
from .native_config import (
    CLUSTER,
    METRICS,
    Component,
    Layout,
    addressed_secrets,
    alertmanager_config,
    components,
    discovered_targets,
    grafana_provisioning,
    port_variables,
    ports,
    prometheus_config,
    unreachable_by_others,
)
from .native_grafana import grafana_file_variables, reset_grafana_admin
from .native_postgres import init_postgres
from .native_user import Account, Reach, account, describe, own, passable, reach, share
from .processes import (
    Running,
    cluster_status,
    launch,
    log_tail,
    port_free,
    port_holder,
    stop,
    targets,
    wait_for_targets,
)
from .project import Project
from .secrets import changed_since_applied, mark_applied, run_root, write_new
from .secrets import database_url as app_database_url
from .services import GLOBAL_RULES, GLOBAL_VIEW
from .settings import StackError, check_environment

READY_TIMEOUT = 30.0


def layout(env: str) -> Layout:
    return Layout(check_environment(env), run_root())


# ---- Debian packages --------------------------------------------------------------------


def install_packages() -> None:
    """What `make up` installs before anything else (stack/packages.py), again for callers
    of `python -m stack up` that skip make."""
    apt.install(packages.runtime_missing(), "make up (the native runtime)")


# ---- state: what runs, by PID ------------------------------------------------------------


def load_state(where: Layout) -> dict[str, Any]:
    try:
        return json.loads(where.state_file.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return {"env": None, "components": {}}


def save_state(where: Layout, state: dict[str, Any]) -> None:
    where.state_file.parent.mkdir(parents=True, exist_ok=True)
    write_new(where.state_file, json.dumps(state, indent=2), 0o600)


def running_of(entry: dict[str, Any]) -> Running:
    return Running(entry["pid"], entry["start_time"], entry["log"])


def alive_components(state: dict[str, Any]) -> set[str]:
    return {n for n, e in state["components"].items() if running_of(e).alive()}


# ---- up ------------------------------------------------------------------------------------


def database_url(where: Layout, port: int) -> str:
    """The app's URL (its own role, over TCP with scram-sha-256), with the local address."""
    password = (where.run_dir / "secrets" / "assistant_database_password").read_text().strip()
    return app_database_url(password, f"127.0.0.1:{port}")


def database_url_file(where: Layout, port: int) -> Path:
    """The API's database URL with its local address, as a secret file beside Compose's."""
    path = where.run_dir / "secrets" / "native_database_url"
    write_new(path, database_url(where, port) + "\n", 0o600)
    return path


# what only `make up` reads: its bookkeeping, the roles' verifiers it gives psql
CALLERS_ONLY = ("native-secrets.applied", "compose-secrets.applied", "postgres_roles")


def private_run_root(where: Layout, who: Account) -> None:
    """The run root closed to others: its environment's directory (secrets, configuration)
    the caller's with ``who``'s group (0750, files 0640); the logs the caller's alone (0700,
    0600, stack/processes.py); the data's directories 0711, so PostgreSQL's user and ``who``
    pass to their own data below (each 0700) without listing anything."""
    for directory in (where.runs, where.runs / "data", where.data_dir):
        passable(directory)
    for directory in (where.runs / "logs", where.log_dir):
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
    for log in where.log_dir.glob("*.log"):
        log.chmod(0o600)
    where.config_dir.mkdir(parents=True, exist_ok=True)
    where.secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    where.targets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for directory in (
        where.run_dir,
        where.run_dir / "secrets",
        where.config_dir,
        where.secrets_dir,
        where.targets_dir,
    ):
        share(directory, who, 0o750)
        for path in directory.iterdir():
            if path.is_file() and not path.is_symlink():
                share(path, who, 0o600 if path.name in CALLERS_ONLY else 0o640)


def check_other_env(env: str) -> None:
    """One native stack at a time: another environment's must be stopped first."""
    state = load_state(layout(env))
    if state["env"] not in (None, env) and alive_components(state):
        raise StackError(
            f"the {state['env']} stack runs natively; stop it first: make down ENV={state['env']}"
        )


def up(env: str, topology: str | None = None) -> int:
    """After the checks (lint.preflight, which wrote .run/<env>); Compose's waves
    (`depends_on`), each started together once the one before is ready."""
    check_other_env(env)
    who = account()
    where = layout(env)
    state = load_state(where)
    project = Project(env, where.run_dir, topology=topology)
    running = state.get("topology", "single")
    if state["env"] == env and alive_components(state) and running != project.topology:
        raise StackError(
            f"the {env} stack runs natively in the {running} topology: "
            f"stop it first (make down ENV={env})"
        )
    local_ports = ports(project)
    database = database_url_file(where, local_ports["postgres"])
    private_run_root(where, who)  # before postgres_dir looks at what PostgreSQL can reach
    parts = components(project, where, local_ports, str(database))
    if state["env"] == env:
        check_replicas(state, {c.name for c in parts}, env)
    for part in parts:
        part.user = part.user or (who.name if who.switches else None)
        if part.user:
            part.env["HOME"] = pwd.getpwnam(part.user).pw_dir
    names = {c.name for c in parts}
    if where.postgres_dir != where.data_dir:
        print(
            f"postgres: data in {where.postgres_dir} (its user cannot reach {where.data_dir}: "
            f"{unreachable_by_others(where.data_dir)} is closed to others)"
        )
    if "grafana" not in names:
        print(
            "grafana: skipped (no grafana-server or grafana binary, and Debian has no package); "
            "its scrape job is left out of the native Prometheus configuration"
        )
    trees = [ROOT, where.runs, Path(sys.base_prefix), Path(sys.base_exec_prefix)]
    with reach(who, trees) as seen:
        for line in describe(seen, who):
            print(line)
        (where.config_dir / "prometheus.yml").write_text(
            seen.text(prometheus_config(project, where, local_ports, names))
        )
        (where.config_dir / "alertmanager.yml").write_text(
            seen.text(alertmanager_config(project, where, local_ports))
        )
        write_private(addressed_secrets(where, local_ports))
        write_discovered(discovered_targets(project, where, local_ports, names), who)
        if "grafana" in names:
            grafana_provisioning(project, where, local_ports, seen.text)
        private_run_root(where, who)  # the files just written
        return _start(env, where, state, project, local_ports, parts, who, seen)


def check_replicas(state: dict[str, Any], wanted: set[str], env: str) -> None:
    """More replicas may be added to a running stack, never fewer: `up` only starts."""
    alive = alive_components(state)
    extra = sorted(n for n in alive - wanted if state["components"][n].get("service", n) != n)
    if extra:
        raise StackError(
            f"the {env} stack runs {', '.join(extra)} too: for fewer replicas, stop it first "
            f"(make down ENV={env})"
        )


def _start(
    env: str, where: Layout, state: dict[str, Any], project: Project,
    local_ports: dict[str, int], parts: list[Component], who: Account, seen: Reach,
) -> int:  # fmt: skip
    """What is not running yet, in Compose's waves, each as its user; then until every
    target is up."""
    if state["env"] != env:
        state = {"env": env, "components": {}}
    state["topology"] = project.topology
    alive = alive_components(state)
    if alive and changed_since_applied(where.run_dir, "native"):
        # its processes read the secrets at start, PostgreSQL's roles get them at start
        print(f"the secrets changed since the {env} stack started: restarting it")
        down(env)
        state, alive = {"env": env, "topology": project.topology, "components": {}}, set()
    to_start = [c for c in parts if c.name not in alive]
    if not to_start:
        print(f"the {env} stack already runs natively: nothing changed")
        return status(env)
    busy = [
        f"port {port} ({c.name}) is in use by {port_holder(port)}: stop it, or choose "
        f"another port with {port_variables()[key]}=<port>"
        for c in to_start
        for port, key in (
            (c.port, c.service),
            (c.gossip, c.service + CLUSTER),
            (c.metrics, c.service + METRICS),
        )
        if port is not None and not port_free(port)
    ]
    if busy:
        raise StackError("\n".join(busy))  # every one at once: one fix, one retry
    started: list[str] = []
    number = 0
    try:
        for wave in project.start_waves():
            # Prometheus' clock starts first; PostgreSQL's initdb (~1 s) blocks, so it goes last
            batch = sorted(
                (c for c in to_start if c.service in wave),
                key=lambda c: (c.name != "prometheus", c.name == "postgres"),
            )
            begin = time.monotonic()
            for component in batch:
                started.append(component.name)  # stopped again if anything fails
                _launch(component, where, state, who, seen)
            pending = list(batch)
            deadline = begin + READY_TIMEOUT
            while pending:
                for component in list(pending):
                    if _ready(component, where, state, deadline):
                        pending.remove(component)
                        number += 1
                        took = time.monotonic() - begin
                        counter = f"[{number:2}/{len(to_start)}]"
                        url = component.url or "-"
                        print(f"  {counter} {component.name:18} ready in {took:4.1f} s  {url}",
                              flush=True)  # fmt: skip
                time.sleep(0.05)
    except BaseException:
        for name in reversed(started):
            entry = state["components"].pop(name, None)
            if entry is not None:
                stop(running_of(entry), entry["stop_signal"])
        save_state(where, state)
        raise
    prometheus = f"http://127.0.0.1:{local_ports['prometheus']}"
    wait_for_targets(prometheus, headers=webauth.headers(where.run_dir))
    mark_applied(where.run_dir, "native")
    return status(env)


def write_private(files: dict[Path, str]) -> None:
    """Each file anew (never through a link), as `make up` writes .run/<env>/secrets/; its
    directory is then shared with the components' account alone (private_run_root)."""
    for path, text in files.items():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        write_new(path, text, 0o644)


def write_discovered(files: dict[Path, str], who: Account) -> None:
    """The files a running Prometheus discovers targets in, each only when it changed, and
    then at once, readable by ``who``'s group before it takes the file's place (Prometheus
    reads it again on every change)."""
    for path, text in files.items():
        if path.exists() and path.read_text() == text:
            continue
        new = path.with_name(path.name + ".new")
        write_new(new, text, 0o640)
        share(new, who, 0o640)
        new.replace(path)


def _launch(
    component: Component, where: Layout, state: dict[str, Any], who: Account, seen: Reach
) -> None:
    """Started as its user: the account's components with their data theirs, their paths as
    the account reaches them (``seen``) and those directories open."""
    if component.name == "postgres":
        init_postgres(component, where)  # the cluster, its authentication, its roles
    if component.name == "grafana":
        component.env = grafana_file_variables(component.env)
        reset_grafana_admin(component, where)
    mine = component.user is None or component.user == who.name
    for path in component.data:
        if mine:
            own(path, who)
        else:
            path.mkdir(parents=True, exist_ok=True)
    argv, environ, fds = component.argv, component.env, ()
    if mine:
        argv = [seen.text(a) for a in argv]
        environ = {k: seen.text(v) for k, v in environ.items()}
        fds = seen.fds
    log = where.log_dir / f"{component.name}.log"
    running = launch(argv, log, environ, component.user, cwd=ROOT, pass_fds=fds)
    state["components"][component.name] = running.as_dict() | {
        "port": component.port, "url": component.url, "job": component.job,
        "metrics": component.metrics,
        "service": component.service, "stop_signal": int(component.stop_signal),
    }  # fmt: skip
    save_state(where, state)


def _ready(component: Component, where: Layout, state: dict[str, Any], deadline: float) -> bool:
    """True once the component answers; raises with its log's tail when it died or did not
    answer in time."""
    running = running_of(state["components"][component.name])
    if component.probe():
        return True
    if not running.alive():
        raise StackError(
            f"{component.name} exited at start; its log ends:\n{log_tail(running.log)}"
        )
    if time.monotonic() > deadline:
        raise StackError(
            f"{component.name} not ready within {READY_TIMEOUT:g} s; its log ends:\n"
            f"{log_tail(running.log)}"
        )
    return False


# ---- down, status, logs, clean ------------------------------------------------------------


def _running_state(env: str) -> tuple[Layout, dict[str, Any]] | None:
    """The environment's layout and native state, or None (said) when it does not run."""
    where = layout(env)
    state = load_state(where)
    if state["env"] != env or not state["components"]:
        print(f"the {env} stack is not running natively")
        return None
    return where, state


def down(env: str, topology: str | None = None) -> int:
    """Every component the state names, whatever the topology asked for."""
    found = _running_state(env)
    if found is None:
        return 0
    where, state = found
    for name in reversed(list(state["components"])):
        entry = state["components"][name]
        was_running = stop(running_of(entry), entry.get("stop_signal", 15))
        print(f"  {name:18} {'stopped' if was_running else 'was not running'} (pid {entry['pid']})")
        del state["components"][name]
        save_state(where, state)
    where.state_file.unlink(missing_ok=True)
    print(
        f"the {env} stack is stopped; its data is kept in {where.data_dir} (make clean removes it)"
    )
    return 0


def status(env: str, topology: str | None = None) -> int:
    """Every component the state names (each replica and peer), whatever the topology asked
    for."""
    found = _running_state(env)
    if found is None:
        return 0
    _, state = found
    entries = state["components"]
    health: dict[str, str] = {}
    prometheus = entries.get("prometheus")
    if prometheus and running_of(prometheus).alive():
        try:
            url = f"http://127.0.0.1:{prometheus['port']}"
            for t in targets(url, webauth.headers(layout(env).run_dir)):
                port = int(t["scrapeUrl"].split("//")[1].split("/")[0].split(":")[1])
                health[str(port)] = t["health"]
        except (OSError, ValueError, KeyError):
            pass
    rows = [("component", "state", "url", "target")]
    for name, entry in entries.items():
        state_text = "running" if running_of(entry).alive() else "DEAD"
        scraped = entry.get("metrics") or entry.get("port")  # its metrics listener's, if any
        target = health.get(str(scraped), "-") if entry.get("job") else "-"
        rows.append((name, state_text, entry.get("url") or "-", target))
    up = sum(1 for h in health.values() if h == "up")
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    print(f"  targets up: {up}/{len(health)}" if health else "  targets: Prometheus not answering")
    if state.get("topology") == "ha":
        for line in replicas(entries, webauth.headers(layout(env).run_dir)):
            print("  " + line)
    dead = [n for n, e in entries.items() if not running_of(e).alive()]
    return 1 if dead else 0


def replicas(entries: dict[str, Any], headers: dict[str, str]) -> list[str]:
    """The HA topology's Prometheus replicas and Alertmanager peers with their URLs, each peer
    with its cluster as it sees it, and the global view."""
    pair = [f"{n} {e['url']}" for n, e in entries.items() if e.get("job") == "prometheus"]
    peers = []
    for name, entry in entries.items():
        if entry.get("job") != "alertmanager":
            continue
        try:
            seen = cluster_status(entry["url"], headers)
        except (OSError, ValueError, KeyError):
            seen = "not answering"
        peers.append(f"{name} {entry['url']} ({seen})")
    views = [f"{n} {e['url']}" for n, e in entries.items() if e.get("job") == GLOBAL_VIEW]
    rules = [f"{n} {e['url']}" for n, e in entries.items() if e.get("job") == GLOBAL_RULES]
    return [
        "prometheus replicas: " + ", ".join(pair),
        "alertmanager peers: " + ", ".join(peers),
        "global view: "
        + (", ".join(views) or "not running")
        + " (both replicas' series, deduplicated; Grafana's default datasource)",
        "rules on the global view: "
        + (", ".join(rules) or "not running")
        + " (the anomaly rules, evaluated once)",
    ]


def logs(env: str, topology: str | None = None, lines: int = 30) -> int:
    where = layout(env)
    files = sorted(where.log_dir.glob("*.log"))
    if not files:
        print(f"no native logs for {env} in {where.log_dir}")
    for path in files:
        print(f"==> {path.stem} ({path})")
        print(log_tail(path, lines))
    return 0


def clean(env: str, topology: str | None = None) -> int:
    where = layout(env)
    state = load_state(where)
    if state["env"] == env and alive_components(state):
        raise StackError(f"the {env} stack is running: make down ENV={env} first")
    for path in dict.fromkeys(
        [where.data_dir, where.postgres_dir, where.log_dir, where.config_dir]
    ):
        if path.exists():
            shutil.rmtree(path)
            print(f"removed {path}")
    return 0
