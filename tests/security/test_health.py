"""Finding 5: ``/health/*`` against a real ``python -m assistant`` whose database and Redis are
down (a closed port, so every check fails with an error naming an address). A flood runs each
check at most once per interval; public answers carry the status only; the details need the
metrics token; the flood is counted in the metrics."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.security.conftest import Attack
from tests.security.processes import Running, assistant, exchange, request

pytestmark = pytest.mark.server

METRICS_TOKEN = "security-metrics-token"
SCRAPER = {"Authorization": f"Bearer {METRICS_TOKEN}"}
INTERVAL = 30.0  # longer than the whole module: one run per check, whatever the flood
FLOOD = 200
AttackFn = Callable[[str, str], Attack]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    env = {
        "ASSISTANT_METRICS_TOKEN": METRICS_TOKEN,
        "ASSISTANT_HEALTH_INTERVAL_SECONDS": str(INTERVAL),
        "ASSISTANT_METRICS_SOURCE_TTL_SECONDS": str(INTERVAL),
    }
    with assistant(tmp_path_factory.mktemp("health"), **env) as running:
        yield running


def get(server: Running, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    reply = exchange(server.port, request("GET", path, headers))
    return reply.status, reply.body


def flood(server: Running, paths: list[str]) -> list[int]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda i: get(server, paths[i % len(paths)])[0], range(FLOOD)))


def test_a_flood_runs_each_check_at_most_once_per_interval(
    server: Running, attack: AttackFn
) -> None:
    a = attack(f"{FLOOD} concurrent GET /health/database and /overall", "1 check run each")
    statuses = flood(server, ["/health/database", "/health/overall"])
    status, body = get(server, "/health/history", SCRAPER)
    runs = [r["check"] for r in json.loads(body)["results"]] if status == 200 else []
    a.happened = f"{runs.count('database')} database, {runs.count('redis')} redis check runs"
    assert set(statuses) == {503}
    assert runs.count("database") <= 1 and runs.count("redis") <= 1
    a.blocked = True


@pytest.mark.parametrize("path", ["/health/database", "/health/overall"])
def test_public_answers_carry_the_status_only(server: Running, attack: AttackFn, path: str) -> None:
    a = attack(f"anonymous GET {path}, database down", "503 with the status only")
    status, body = get(server, path)
    answer = json.loads(body)
    a.happened = f"{status} {body[:70]!r}"
    assert status == 503
    assert answer["status"] == "unhealthy"
    assert set(answer) <= {"status", "check", "checks"}
    assert b"127.0.0.1" not in body and b"Error" not in body and b"error" not in body
    a.blocked = True


def test_the_details_are_there_for_the_metrics_token(server: Running) -> None:
    status, body = get(server, "/health/database", SCRAPER)
    assert status == 503
    assert "ConnectionRefusedError" in json.loads(body)["error"]
    status, body = get(server, "/health/overall", SCRAPER)
    assert json.loads(body)["checks"]["redis"]["error"]
    for path in ("/health/database/pool", "/health/database/performance", "/health/history"):
        assert get(server, path, SCRAPER)[0] == 200, path


@pytest.mark.parametrize(
    "path", ["/health/database/pool", "/health/database/performance", "/health/history"]
)
def test_detail_endpoints_need_the_metrics_token(
    server: Running, attack: AttackFn, path: str
) -> None:
    a = attack(f"anonymous GET {path}", "401")
    status, body = get(server, path, {"Authorization": "Bearer not-the-token"})
    a.happened = f"{status} {body[:60]!r}"
    assert status == 401
    a.blocked = True


def test_a_flood_shows_in_the_metrics(server: Running, attack: AttackFn) -> None:
    a = attack(f"{FLOOD} GET /health/overall", f"counted: {FLOOD} more in the metrics")
    before = counted(server, "/health/overall")
    flood(server, ["/health/overall"])
    after = counted(server, "/health/overall")
    a.happened = f"{after - before:g} more counted"
    assert after - before == FLOOD
    a.blocked = True


def counted(server: Running, endpoint: str) -> float:
    """Requests to ``endpoint`` in http_excluded_requests_total (the health paths are left
    out of the HTTP metrics that the SLO reads, and counted there)."""
    status, body = get(server, "/metrics", SCRAPER)
    assert status == 200
    total = 0.0
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if (
                sample.name == "http_excluded_requests_total"
                and sample.labels.get("endpoint") == endpoint
            ):
                total += sample.value
    return total
