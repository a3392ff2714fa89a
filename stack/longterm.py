"""What `make lint` demands of the HA topology's long-term store and global view,
VictoriaMetrics (service ``victoriametrics``), read from the Compose files as Compose merges
them (stack/project.py) and from the generated Prometheus configuration.

- its flags: ``-dedup.minScrapeInterval`` equal to SCRAPE_INTERVAL (one sample of the pair's
  two per interval), a ``-retentionPeriod`` longer than each replica's HA_RETENTION_TIME;
- its monitoring user: its entry point is victoriametrics/entrypoint.sh with the
  environment's MONITORING_AUTH and the password's secret, and ``-envflag.enable``;
- every replica writes to it (``remote_write``) without the replica label, with the
  monitoring user, and scrapes it with that user;
- Grafana's HA datasources: the dashboards' uid is the default one and is VictoriaMetrics.

The single topology has none of it: no service, no remote_write.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from . import hardening, webauth
from .project import Project
from .promql import seconds
from .services import GLOBAL_VIEW
from .settings import environment_settings
from .yamlfile import load_yaml

SERVICE = GLOBAL_VIEW
ENTRYPOINT = "/usr/local/bin/stack-entrypoint.sh"
ENTRYPOINT_SOURCE = Path("victoriametrics") / "entrypoint.sh"
PASSWORD = "/run/secrets/monitoring_password"
HA_DATASOURCES = Path("grafana") / "provisioning-ha" / "datasources" / "prometheus.yml"
DASHBOARDS_UID = "prometheus"  # the datasource uid every dashboard uses
MONTH = 31 * 86400


def retention_seconds(period: str) -> float:
    """A ``-retentionPeriod`` in seconds: ``14d``, ``2w``, ``1y``, or months without a unit."""
    if period.isdigit():
        return int(period) * MONTH
    return seconds(period)


def flags(service: dict[str, Any]) -> dict[str, str]:
    """``{"-flag": "value"}`` of its command (``""`` for a flag without a value)."""
    found = {}
    for arg in service.get("command") or []:
        flag, _, value = str(arg).partition("=")
        found[flag] = value
    return found


def problems(project: Project, prometheus_config: str) -> list[str]:
    """``prometheus_config``: the environment's generated configuration, its topology's."""
    services = project.services()
    config = load_yaml(prometheus_config)
    if not project.ha:
        found = [f"{SERVICE}: in the single topology"] if SERVICE in services else []
        return found + ["remote_write in the single topology"] * ("remote_write" in config)
    if SERVICE not in services:
        return [f"no {SERVICE} service in the HA topology"]
    service = services[SERVICE]
    return [
        *flag_problems(project, flags(service)),
        *auth_problems(project, service),
        *writer_problems(config),
        *datasource_problems(project.root),
    ]


def flag_problems(project: Project, given: dict[str, str]) -> list[str]:
    settings = environment_settings(project.env, project.root)
    found = []
    interval = settings.get("SCRAPE_INTERVAL")
    if given.get("-dedup.minScrapeInterval") != interval:
        found.append(f"{SERVICE}: -dedup.minScrapeInterval is not SCRAPE_INTERVAL ({interval})")
    period, kept = given.get("-retentionPeriod", ""), settings.get("HA_RETENTION_TIME", "0s")
    try:
        if retention_seconds(period) <= seconds(kept):
            found.append(f"{SERVICE}: -retentionPeriod={period} is not longer than the "
                         f"replicas' HA_RETENTION_TIME={kept}")  # fmt: skip
    except ValueError:
        found.append(f"{SERVICE}: -retentionPeriod={period!r} is no retention (h, d, w, y, months)")
    return found


def auth_problems(project: Project, service: dict[str, Any], name: str = SERVICE) -> list[str]:
    """Its monitoring user from its entry point (``name``: VictoriaMetrics, or vmalert, which
    runs the same one)."""
    entrypoint = [str(e) for e in service.get("entrypoint") or []]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes") or []}
    environment = service.get("environment") or {}
    secrets = [hardening.secret_name(s) for s in service.get("secrets") or []]
    script = mounts.get(ENTRYPOINT) == str(project.root / ENTRYPOINT_SOURCE)
    found = []
    if entrypoint[:1] != [ENTRYPOINT] or not script:
        found.append(f"{name}: its entry point is not {ENTRYPOINT_SOURCE} (its monitoring user)")
    if "-envflag.enable" not in flags(service):
        found.append(f"{name}: no -envflag.enable: its entry point's -httpAuth.* are not read")
    if environment.get("MONITORING_AUTH") != webauth.mode(project.env, project.root):
        found.append(f"{name}: its MONITORING_AUTH is not the environment's")
    mounted = PASSWORD.rsplit("/", 1)[1] in secrets
    if environment.get("MONITORING_PASSWORD_FILE") != PASSWORD or not mounted:
        found.append(f"{name}: MONITORING_PASSWORD_FILE is not the secret {PASSWORD}")
    return found


def writer_problems(config: dict[str, Any]) -> list[str]:
    writes = [w for w in config.get("remote_write") or [] if _names_service(w.get("url", ""))]
    if not writes:
        return [f"remote_write: no replica writes to {SERVICE}"]
    found = []
    for write in writes:
        dropped = [
            r for r in write.get("write_relabel_configs") or []
            if r.get("action") == "labeldrop" and r.get("regex") == "replica"
        ]  # fmt: skip
        if not dropped:
            found.append(f"remote_write {write['url']}: keeps the replica label (labeldrop)")
        if not webauth.sends_user(write):
            found.append(f"remote_write {write['url']}: without the {webauth.USER} user")
    jobs = [j for j in config["scrape_configs"] if j["job_name"] == SERVICE]
    if not jobs or not webauth.sends_user(jobs[0]):
        found.append(f"job {SERVICE}: missing, or without the {webauth.USER} user")
    return found


def datasource_problems(root: Path) -> list[str]:
    sources = load_yaml((root / HA_DATASOURCES).read_text())["datasources"]
    default = [
        (s.get("uid"), _names_service(s.get("url", ""))) for s in sources if s.get("isDefault")
    ]
    if default != [(DASHBOARDS_UID, True)]:
        return [f"{HA_DATASOURCES}: the one default datasource is not uid {DASHBOARDS_UID!r} "
                f"on {SERVICE}"]  # fmt: skip
    return []


def _names_service(url: str) -> bool:
    return re.match(rf"https?://{SERVICE}:\d+(/|$)", url) is not None
