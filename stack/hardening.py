"""What `make lint` demands of every container and of the monitoring components' web
authentication, read from the Compose files as Compose merges them (stack/project.py).

Every service: ``read_only: true``, ``cap_drop: [ALL]``, ``no-new-privileges:true`` in
``security_opt``, a ``pids_limit``, a ``user`` that is not root, and no ``cap_add``, unless
its ``x-hardening-exception`` gives the reason for the setting it lacks::

    x-hardening-exception:
      read_only: "<why it must write its root file system>"
      cap_add: {CHOWN: "<why>"}      # one reason per capability added back

Web authentication (stack/webauth.py), in every environment: no ``--web.enable-lifecycle``;
Prometheus and Alertmanager (every replica and peer) run with ``--web.config.file`` mounted
from the web configuration `make up` writes; every service that does is scraped, notified and
healthchecked with the monitoring user; where the environment asks for ``basic`` the file
names that user.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import webauth
from .project import Project, job_hosts
from .services import records
from .yamlfile import load_yaml

EXCEPTION = "x-hardening-exception"
SETTINGS = ("read_only", "cap_drop", "no-new-privileges", "pids_limit", "user", "cap_add")
NO_NEW_PRIVILEGES = ("no-new-privileges:true", "no-new-privileges=true", "no-new-privileges")
ROOT_USERS = ("", "0", "root")
# at least every service of these packages (Prometheus and Alertmanager, each replica and peer
# of the HA topology), in every environment
AUTHENTICATED = ("prometheus", "prometheus-alertmanager")
WEB_CONFIG_FLAG = "--web.config.file="
LIFECYCLE_FLAG = "--web.enable-lifecycle"


def lacks(service: dict[str, Any]) -> dict[str, str]:
    """Each hardening setting the service lacks, with what is wrong."""
    found = {}
    if service.get("read_only") is not True:
        found["read_only"] = "its root file system is writable (read_only: true)"
    if "ALL" not in [str(c).upper() for c in service.get("cap_drop") or []]:
        found["cap_drop"] = "keeps the default capabilities (cap_drop: [ALL])"
    if not set(NO_NEW_PRIVILEGES) & set(service.get("security_opt") or []):
        found["no-new-privileges"] = "may gain privileges (security_opt: [no-new-privileges:true])"
    limit = service.get("pids_limit")
    if not isinstance(limit, int) or limit <= 0:
        found["pids_limit"] = "has no pids limit (pids_limit)"
    if str(service.get("user", "")).split(":")[0] in ROOT_USERS:
        found["user"] = f"runs as root (user: {service.get('user', 'unset')!r})"
    return found


def stated_exceptions(files: list[Path]) -> dict[str, Any]:
    """Each service's ``x-hardening-exception``, read from the Compose files themselves (a
    later file's replaces an earlier one's): Debian's docker-compose drops a service's
    ``x-`` keys when it merges several files."""
    found = {}
    for path in files:
        services = (load_yaml(path.read_text()) or {}).get("services") or {}
        for name, service in services.items():
            if isinstance(service, dict) and EXCEPTION in service:
                found[name] = service[EXCEPTION]
    return found


def problems(services: dict[str, dict[str, Any]], stated: dict[str, Any]) -> list[str]:
    """Every service's missing hardening without a reason in ``stated`` (its exceptions)."""
    found = []
    for name, service in sorted(services.items()):
        exceptions = stated.get(name) or {}
        if not isinstance(exceptions, dict):
            found.append(f"{name}: {EXCEPTION} must map a setting to its reason")
            continue
        found += [
            f"{name}: {EXCEPTION} names {key!r}, not one of {', '.join(SETTINGS)}"
            for key in exceptions
            if key not in SETTINGS
        ]
        for key, what in lacks(service).items():
            if not _reason(exceptions.get(key)):
                found.append(f"{name}: {what}; or give the reason in {EXCEPTION}.{key}")
        if service.get("pids_limit") and (service.get("deploy") or {}).get("resources"):
            found.append(
                f"{name}: deploy.resources beside pids_limit: Compose v2 then demands an equal "
                "deploy.resources.limits.pids, which Debian's docker-compose refuses; give "
                "cpus and mem_limit instead"
            )
        reasons = exceptions.get("cap_add") or {}
        for capability in service.get("cap_add") or []:
            if not isinstance(reasons, dict) or not _reason(reasons.get(capability)):
                found.append(
                    f"{name}: cap_add {capability} without a reason; give it in "
                    f"{EXCEPTION}.cap_add.{capability}"
                )
    return found


def _reason(text: object) -> bool:
    return isinstance(text, str) and bool(text.strip())


# ---- web authentication ----------------------------------------------------------------


def web_config_path(service: dict[str, Any]) -> str | None:
    """The container path its ``--web.config.file`` names, if it has one."""
    for arg in service.get("command") or []:
        if str(arg).startswith(WEB_CONFIG_FLAG):
            return str(arg)[len(WEB_CONFIG_FLAG) :]
    return None


def auth_problems(project: Project, prometheus_config: str) -> list[str]:
    """``prometheus_config``: the environment's generated Prometheus configuration."""
    services = project.services()
    rendered = str(project.run_dir / webauth.WEB_CONFIG)
    found = [
        f"{name}: {LIFECYCLE_FLAG} lets anyone who reaches it stop it"
        for name, service in services.items()
        if LIFECYCLE_FLAG in (service.get("command") or [])
    ]
    authenticated = {n for n, s in services.items() if web_config_path(s)}
    required = [n for n in services if n in records() and records()[n].package in AUTHENTICATED]
    found += [f"{n}: no {WEB_CONFIG_FLAG}" for n in required if n not in authenticated]
    for name in sorted(authenticated):
        service = services[name]
        mounts = {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes") or []}
        if mounts.get(web_config_path(service) or "") != rendered:
            found.append(f"{name}: {WEB_CONFIG_FLAG} is not {rendered} (make up writes it)")
        secret = project.healthcheck_secret(name)
        if secret is None:
            found.append(f"{name}: its healthcheck sends no Authorization header")
        elif secret.rsplit("/", 1)[1] not in [secret_name(s) for s in service.get("secrets") or []]:
            found.append(f"{name}: its healthcheck reads {secret}, which it does not mount")
    config = load_yaml(prometheus_config)
    for job in config["scrape_configs"]:
        scraped = {"prometheus" if h == "localhost" else h for h in job_hosts(job)} & authenticated
        if scraped and not webauth.sends_user(job):
            found.append(f"job {job['job_name']}: scrapes {', '.join(sorted(scraped))} "
                         f"without the {webauth.USER} user (basic_auth)")  # fmt: skip
    if "alertmanager" in authenticated:
        found += [
            "alerting: notifies Alertmanager without the monitoring user (basic_auth)"
            for am in config["alerting"]["alertmanagers"]
            if not webauth.sends_user(am)
        ]
    web = load_yaml((project.run_dir / webauth.WEB_CONFIG).read_text()) or {}
    users = web.get("basic_auth_users") or {}
    if webauth.mode(project.env, project.root) == "basic" and webauth.USER not in users:
        found.append(f"{rendered}: MONITORING_AUTH=basic but no {webauth.USER} user")
    return found


def secret_name(secret: str | dict[str, Any]) -> str:
    """A service's secret as Compose lists it (a name, or ``{source: name, ...}``)."""
    return secret["source"] if isinstance(secret, dict) else secret
