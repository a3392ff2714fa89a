"""A container's port has one home, its Compose service's `expose`; every place that repeats it
must agree: the URL its healthcheck fetches, the container side of what it publishes (`ports:`),
Prometheus's static targets (``service:port`` in prometheus/prometheus.yml) and the port its DNS
discovery scrapes each replica of a service on (``dns_sd_configs``), the port a service's own
environment tells it to listen on (a ``*_PORT`` variable: ``ASSISTANT_METRICS_PORT: "9464"``),
and every other ``service:port`` address: in the services' commands and environments, and in
the configuration files the containers read (ADDRESS_FILES)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .project import Project
from .yamlfile import load_yaml

SCRAPE_CONFIG = Path("prometheus") / "prometheus.yml"
HA_SCRAPE_CONFIG = Path("prometheus") / "ha.yml"  # the HA topology's changes to it
SCRAPER = "prometheus"  # the service that reads SCRAPE_CONFIG: its `localhost`
LOCAL_URL = re.compile(r"https?://(?:127\.0\.0\.1|localhost|\[::1\]):(\d+)")
CONTAINER_PORT = re.compile(r"(\d+)(?:/\w+)?")  # the end of ip:host:container/proto
# authored files that address services by name (the generated ones are copies of these)
ADDRESS_FILES = ("alertmanager/alertmanager.yml", "alertmanager/receivers/*.yml",
                 "grafana/provisioning/**/*.yml", "grafana/provisioning-ha/**/*.yml",
                 "prometheus/ha.yml")  # fmt: skip

Services = Mapping[str, Mapping[str, Any]]
Where = Callable[[str, str], str]  # (service, key) -> the file that sets it


def exposed(service: Mapping[str, Any]) -> set[int]:
    return {int(str(port).split("/")[0]) for port in service.get("expose") or []}


def _disagree(file: str, name: str, what: str, port: int, services: Services) -> list[str]:
    ports = exposed(services[name])
    if port in ports:
        return []
    said = ", ".join(map(str, sorted(ports))) or "no port"
    return [f"{file}: {name}: {what} {port}, but {name} exposes {said}"]


def healthcheck_problems(services: Services, where: Where) -> list[str]:
    problems = []
    for name, service in services.items():
        test = " ".join(map(str, (service.get("healthcheck") or {}).get("test") or []))
        for port in sorted({int(p) for p in LOCAL_URL.findall(test)}):
            file = where(name, "healthcheck")
            problems += _disagree(file, name, "its healthcheck fetches port", port, services)
    return problems


def environment_problems(services: Services, where: Where) -> list[str]:
    """Each ``*_PORT`` variable of a service's environment: a port it listens on, so one it
    exposes."""
    problems = []
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if key.endswith("_PORT") and str(value).isdigit():
                file, what = where(name, "environment"), f"its environment's {key} is"
                problems += _disagree(file, name, what, int(str(value)), services)
    return problems


def published_problems(services: Services, where: Where) -> list[str]:
    problems = []
    for name, service in services.items():
        for entry in service.get("ports") or []:
            target = entry.get("target") if isinstance(entry, dict) else str(entry).split(":")[-1]
            match = CONTAINER_PORT.fullmatch(str(target))
            if match:  # a range is left alone
                port = int(match[1])
                what = "publishes container port"
                problems += _disagree(where(name, "ports"), name, what, port, services)
    return problems


def targets(scrape_config: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """``(what reaches it, "host:port")`` of every static target (the Alertmanagers' and each
    job's), and of every name a job's DNS discovery resolves, with the port it scrapes there."""
    for manager in (scrape_config.get("alerting") or {}).get("alertmanagers") or []:
        for static in manager.get("static_configs") or []:
            yield from (("alerting sends to", t) for t in static.get("targets") or [])
    for job in scrape_config.get("scrape_configs") or []:
        for static in job.get("static_configs") or []:
            yield from ((f"job {job['job_name']} scrapes", t) for t in static.get("targets") or [])
        for dns in job.get("dns_sd_configs") or []:
            found = f"job {job['job_name']} discovers"
            yield from ((found, f"{name}:{dns.get('port')}") for name in dns.get("names") or [])


def scrape_problems(scrape_config: Mapping[str, Any], services: Services, file: str) -> list[str]:
    """Targets on a host that is no Compose service here (elsewhere, or another
    environment's) are left alone."""
    problems = []
    for where, target in targets(scrape_config):
        host, _, port = str(target).rpartition(":")
        name = SCRAPER if host in ("localhost", "127.0.0.1") else host
        if name in services and port.isdigit():
            what = f"{where} {host} on port"
            problems += _disagree(file, name, what, int(port), services)
    return problems


def addresses(text: str, names: set[str]) -> Iterator[tuple[str, int]]:
    """``(service, port)`` of every ``service:port`` in text, alone or in a URL (after ``//``
    or ``@``); ``not-a-service:port`` and ``a.service:port`` are not addresses of a service."""
    pattern = r"(?<![\w.-])(" + "|".join(map(re.escape, sorted(names))) + r"):(\d+)\b"
    for match in re.finditer(pattern, text):
        yield match[1], int(match[2])


def address_problems(services: Services, where: Where, files: Mapping[str, str]) -> list[str]:
    """Addresses in each service's command, entrypoint and environment, and in ``files``
    (name -> text)."""
    names, problems = set(services), []
    for name, service in services.items():
        for key in ("command", "entrypoint", "environment"):
            value = service.get(key) or []
            text = " ".join(map(str, value.values() if isinstance(value, dict) else value))
            for target, port in addresses(text, names):
                what = f"its {key} addresses {target} on port"
                problems += _disagree(where(name, key), target, what, port, services)
    for file, text in files.items():
        for target, port in addresses(text, names):
            problems += _disagree(file, target, "addresses it on port", port, services)
    return problems


def address_files(root: Path) -> dict[str, str]:
    found = sorted({f for pattern in ADDRESS_FILES for f in root.glob(pattern)})
    return {str(f.relative_to(root)): f.read_text() for f in found}


def defined_in(project: Project) -> Where:
    """The last of the project's Compose files that sets the service's key (an overlay's
    setting wins), relative to the root."""
    files = [(f, load_yaml(f.read_text()).get("services") or {}) for f in project.files()]

    def where(name: str, key: str) -> str:
        found = [f for f, services in files if key in (services.get(name) or {})]
        return str((found or [files[0][0]])[-1].relative_to(project.root))

    return where


def problems(project: Project) -> list[str]:
    services = project.services()
    where = defined_in(project)
    scraped = [
        problem
        for config in (SCRAPE_CONFIG, HA_SCRAPE_CONFIG)
        for problem in scrape_problems(
            load_yaml((project.root / config).read_text()), services, str(config)
        )
    ]
    return [
        *healthcheck_problems(services, where),
        *environment_problems(services, where),
        *published_problems(services, where),
        *scraped,
        *address_problems(services, where, address_files(project.root)),
    ]
