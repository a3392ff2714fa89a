"""Each container port repeated outside `expose` agrees with it (stack/ports.py), on in-memory
services: the real dev project's, changed in one place at a time. test_lint.py makes the same
mistakes in a copy of the files."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from stack import ROOT, lint, ports
from stack.project import Project


def where(name: str, key: str) -> str:
    return f"<{key} of {name}>"


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("work")
    return Project("dev", lint.stand_in_run_dir("dev", work)).services()


@pytest.fixture
def changed(services: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(services)


@pytest.fixture(scope="module")
def scrape() -> dict[str, Any]:
    return yaml.safe_load((ROOT / ports.SCRAPE_CONFIG).read_text())  # type: ignore[no-any-return]


def test_the_dev_project_agrees_everywhere(services: dict[str, Any], scrape: dict) -> None:
    assert ports.healthcheck_problems(services, where) == []
    assert ports.environment_problems(services, where) == []
    assert ports.published_problems(services, where) == []
    assert ports.scrape_problems(scrape, services, "prometheus.yml") == []
    assert ports.address_problems(services, where, ports.address_files(ROOT)) == []
    # what the check reads: every healthcheck URL, published port and static target
    assert len([t for _, t in ports.targets(scrape)]) == 10


def test_a_healthcheck_on_another_port(changed: dict[str, Any]) -> None:
    test = changed["redis-exporter"]["healthcheck"]["test"]
    test[1] = test[1].replace(":9121/", ":9122/")
    assert ports.healthcheck_problems(changed, where) == [
        "<healthcheck of redis-exporter>: redis-exporter: its healthcheck fetches port 9122, "
        "but redis-exporter exposes 9121"
    ]


def test_a_listen_port_in_the_environment_the_service_does_not_expose(
    changed: dict[str, Any],
) -> None:
    changed["api"]["environment"]["ASSISTANT_METRICS_PORT"] = "9465"
    changed["worker"]["expose"] = ["8000"]  # the metrics listener's port left out
    assert ports.environment_problems(changed, where) == [
        "<environment of api>: api: its environment's ASSISTANT_METRICS_PORT is 9465, "
        "but api exposes 8000, 9464",
        "<environment of worker>: worker: its environment's ASSISTANT_METRICS_PORT is 9464, "
        "but worker exposes 8000",
    ]


def test_a_published_port_the_service_does_not_expose(changed: dict[str, Any]) -> None:
    changed["receiver"]["ports"] = ["127.0.0.1:9095:9096/tcp"]
    changed["grafana"]["ports"] = [{"target": 3001, "published": "3000"}]  # the long form
    assert ports.published_problems(changed, where) == [
        "<ports of grafana>: grafana: publishes container port 3001, but grafana exposes 3000",
        "<ports of receiver>: receiver: publishes container port 9096, but receiver exposes 9095",
    ]


def test_a_port_published_by_a_service_that_exposes_none(changed: dict[str, Any]) -> None:
    changed["traffic"]["ports"] = ["127.0.0.1:8080:8080/tcp"]
    assert ports.published_problems(changed, where) == [
        "<ports of traffic>: traffic: publishes container port 8080, but traffic exposes no port"
    ]


def test_a_scrape_target_on_another_port(services: dict[str, Any], scrape: dict) -> None:
    text = (ROOT / ports.SCRAPE_CONFIG).read_text()
    text = text.replace("port: 9464", "port: 8001").replace('"localhost:9090"', '"localhost:9091"')
    text = text.replace('targets: ["alertmanager:9093"]', 'targets: ["alertmanager:9094"]', 1)
    problems = ports.scrape_problems(yaml.safe_load(text), services, "prometheus.yml")
    assert problems == [
        "prometheus.yml: alertmanager: alerting sends to alertmanager on port 9094, "
        "but alertmanager exposes 9093",
        "prometheus.yml: api: job personal_assistant_api discovers api on port 8001, "
        "but api exposes 8000, 9464",  # DNS discovery: every replica of each name on that port
        "prometheus.yml: worker: job personal_assistant_api discovers worker on port 8001, "
        "but worker exposes 8000, 9464",
        "prometheus.yml: prometheus: job prometheus scrapes localhost on port 9091, "
        "but prometheus exposes 9090",  # localhost: Prometheus itself
    ]


def test_a_target_that_is_no_service_here_is_left_alone(services: dict[str, Any]) -> None:
    scrape = {"scrape_configs": [{"job_name": "x", "static_configs": [
        {"targets": ["example.org:443", "receiver-in-another-env:1"]}]}]}  # fmt: skip
    assert ports.scrape_problems(scrape, services, "prometheus.yml") == []


def test_the_file_named_is_the_last_that_sets_the_key(tmp_path: Path) -> None:
    where = ports.defined_in(Project("dev", lint.stand_in_run_dir("dev", tmp_path)))
    assert where("prometheus", "ports") == "compose/compose.dev.yaml"
    assert where("prometheus", "healthcheck") == "compose/compose.yaml"
    assert where("api", "healthcheck") == "compose/compose.yaml"  # through the anchor
    assert where("receiver", "healthcheck") == "compose/compose.dev.yaml"


def test_an_address_in_an_environment_or_a_command_on_another_port(
    changed: dict[str, Any],
) -> None:
    environment = changed["redis-exporter"]["environment"]
    environment["REDIS_ADDR"] = environment["REDIS_ADDR"].replace(":6379", ":6380")
    changed["traffic"]["command"] = [*changed["traffic"]["command"], "http://api:8001"]
    assert ports.address_problems(changed, where, {}) == [
        "<environment of redis-exporter>: redis: its environment addresses redis on port 6380, "
        "but redis exposes 6379",
        "<command of traffic>: api: its command addresses api on port 8001, but api exposes "
        "8000, 9464",
    ]


def test_an_address_in_a_configuration_file_on_another_port(services: dict[str, Any]) -> None:
    files = ports.address_files(ROOT)
    datasource = "grafana/provisioning/datasources/prometheus.yml"
    files[datasource] = files[datasource].replace("prometheus:9090", "prometheus:9091")
    files["alertmanager/receivers/dev.yml"] += "# http://receiver:9096/extra\n"
    assert ports.address_problems(services, where, files) == [
        "alertmanager/receivers/dev.yml: receiver: addresses it on port 9096, "
        "but receiver exposes 9095",
        f"{datasource}: prometheus: addresses it on port 9091, but prometheus exposes 9090",
    ]


def test_what_is_not_a_service_address_is_left_alone(services: dict[str, Any]) -> None:
    text = "my-redis:1 redis.example.org:2 http://user@postgres-exporter:9187 api:8000"
    assert sorted(ports.addresses(text, set(services))) == [
        ("api", 8000), ("postgres-exporter", 9187)]  # fmt: skip
