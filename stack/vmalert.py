"""What `make lint` demands of the HA topology's rules on the global view, vmalert (service
``vmalert``), read from the Compose files as Compose merges them (stack/project.py) and from
the generated Prometheus configuration.

- Each rule file is evaluated once: in the HA topology the replicas load some (their
  ``rule_files``) and vmalert the others (its ``-rule`` flags, mounted from
  prometheus/generated/rules/), none left out and none twice; the single topology's
  Prometheus loads every one, and there is no vmalert.
- vmalert queries VictoriaMetrics, writes its recording rules' results back to it and reads
  its alerts' state from it after a restart (``-datasource.url``, ``-remoteWrite.url``,
  ``-remoteRead.url``), and notifies every Alertmanager peer (``-notifier.url``), each with
  the monitoring user; its alerts carry the replicas' external labels (``-external.label``),
  the replica label apart, so routing and inhibition treat them as the replicas' alerts.
- Its own API asks for the monitoring user as VictoriaMetrics does (the same entry point).

`make lint` also runs ``vmalert -dryRun`` on the files it evaluates (its MetricsQL parser and
its templates), stack/lint.py.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

from . import hardening, longterm, webauth
from .project import Project
from .rules import LOADED, rule_files
from .services import GLOBAL_RULES, GLOBAL_VIEW, records

SERVICE = GLOBAL_RULES
RULES_MOUNT = "/etc/vmalert/rules"  # prometheus/generated/rules/, read-only
REPLICA_LABEL = "replica"
PASSWORD = longterm.PASSWORD
# the flags that name each client's address, and the prefix of that client's basic auth
CLIENTS = {"-datasource.url": "-datasource", "-remoteWrite.url": "-remoteWrite",
           "-remoteRead.url": "-remoteRead"}  # fmt: skip


def flag_values(service: dict[str, Any]) -> dict[str, list[str]]:
    """``{"-flag": [value, ...]}`` of its command, a repeated flag's values in order."""
    found: dict[str, list[str]] = {}
    for arg in service.get("command") or []:
        flag, _, value = str(arg).partition("=")
        found.setdefault(flag, []).append(value)
    return found


def evaluated(service: dict[str, Any]) -> list[str]:
    """The rule files its ``-rule`` flags name (their file names)."""
    return [Path(v).name for v in flag_values(service).get("-rule", [])]


def loaded(config: dict[str, Any], root: Path) -> list[str]:
    """The rule files a Prometheus configuration loads (``rule_files``, globs expanded over
    prometheus/generated/rules/), by file name."""
    names = [p.name for p in rule_files(root, LOADED)]
    patterns = [Path(str(p)).name for p in config.get("rule_files") or []]
    return [n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns)]


def problems(project: Project, config: dict[str, Any]) -> list[str]:
    """``config``: the environment's generated Prometheus configuration, its topology's."""
    services = project.services()
    everything = [p.name for p in rule_files(project.root, LOADED)]
    replicas = loaded(config, project.root)
    if not project.ha:
        found = [f"{SERVICE}: in the single topology"] if SERVICE in services else []
        return found + [f"rule_files: the single Prometheus does not load {n}"
                        for n in everything if n not in replicas]  # fmt: skip
    if SERVICE not in services:
        return [f"no {SERVICE} service in the HA topology"]
    service = services[SERVICE]
    mine = evaluated(service)
    found = [f"{n}: evaluated by the replicas and by {SERVICE} (twice)"
             for n in everything if n in replicas and n in mine]  # fmt: skip
    found += [f"{n}: evaluated by neither the replicas (rule_files) nor {SERVICE} (-rule)"
              for n in everything if n not in replicas and n not in mine]  # fmt: skip
    found += [f"{SERVICE}: -rule {n} is no rule file of {LOADED}" for n in mine
              if n not in everything]  # fmt: skip
    mounts = {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes") or []}
    if mounts.get(RULES_MOUNT) != str(project.root / LOADED):
        found.append(f"{SERVICE}: {RULES_MOUNT} is not {LOADED} (the stamped rules)")
    found += [f"{SERVICE}: -rule {v} is not under {RULES_MOUNT}"
              for v in flag_values(service).get("-rule", [])
              if not v.startswith(RULES_MOUNT + "/")]  # fmt: skip
    return [
        *found,
        *client_problems(project, service),
        *label_problems(service, config),
        *longterm.auth_problems(project, service, SERVICE),
    ]


def client_problems(project: Project, service: dict[str, Any]) -> list[str]:
    """The store for each client, every peer notified, each with the monitoring user."""
    given = flag_values(service)
    secrets = [hardening.secret_name(s) for s in service.get("secrets") or []]
    found = [] if PASSWORD.rsplit("/", 1)[1] in secrets else [f"{SERVICE}: {PASSWORD} not mounted"]
    store = f"http://{GLOBAL_VIEW}:{project.exposed_port(GLOBAL_VIEW)}"
    for flag, prefix in CLIENTS.items():
        if given.get(flag) != [store]:
            found.append(f"{SERVICE}: {flag} is not {store}")
        if not _authenticated(given, prefix, 1):
            found.append(f"{SERVICE}: {flag} without the {webauth.USER} user "
                         f"({prefix}.basicAuth.username and .passwordFile={PASSWORD})")  # fmt: skip
    services = project.services()
    peers = [f"http://{n}:{project.exposed_port(n)}" for n, r in records().items()
             if r.package == "prometheus-alertmanager" and n in services]  # fmt: skip
    notified = given.get("-notifier.url", [])
    if sorted(notified) != sorted(peers):
        found.append(f"{SERVICE}: -notifier.url {notified} is not every peer {peers}")
    if not _authenticated(given, "-notifier", len(notified)):
        found.append(f"{SERVICE}: a -notifier.url without the {webauth.USER} user (one "
                     "-notifier.basicAuth.username and .passwordFile per peer)")  # fmt: skip
    return found


def _authenticated(given: dict[str, list[str]], prefix: str, count: int) -> bool:
    users = given.get(f"{prefix}.basicAuth.username", [])
    files = given.get(f"{prefix}.basicAuth.passwordFile", [])
    return users == [webauth.USER] * count and files == [PASSWORD] * count


def label_problems(service: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """Its ``-external.label`` flags are the replicas' external labels, the replica's apart."""
    wanted = {k: str(v) for k, v in (config.get("global", {}).get("external_labels") or {}).items()
              if k != REPLICA_LABEL}  # fmt: skip
    given = dict(v.partition("=")[::2] for v in flag_values(service).get("-external.label", []))
    if given != wanted:
        return [f"{SERVICE}: -external.label {given} is not the replicas' labels {wanted}"]
    return []
