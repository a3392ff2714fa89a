"""Finding 8, app_metrics' ``/metrics``: the bearer scheme is case-insensitive (RFC 7235), and
a coding refused with ``q=0`` in any spelling is never used (RFC 9110), against a real
``python -m assistant``."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.security.conftest import Attack
from tests.security.processes import Running, assistant, exchange, request

pytestmark = pytest.mark.server

METRICS_TOKEN = "security-metrics-token"
AttackFn = Callable[[str, str], Attack]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("metrics")
    with assistant(tmp, ASSISTANT_METRICS_TOKEN=METRICS_TOKEN) as running:
        yield running


def scrape(server: Running, **headers: str) -> tuple[int, str]:
    """The status and Content-Encoding of GET /metrics with ``headers``."""
    names = {k.replace("_", "-").title(): v for k, v in headers.items()}
    reply = exchange(server.port, request("GET", "/metrics", names))
    return reply.status, reply.headers.get("content-encoding", "identity")


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "beaRer"])
def test_the_bearer_scheme_is_case_insensitive(
    server: Running, attack: AttackFn, scheme: str
) -> None:
    a = attack(f"/metrics with '{scheme} <token>'", "200 (RFC 7235: any case)")
    status, _ = scrape(server, authorization=f"{scheme} {METRICS_TOKEN}")
    a.happened = str(status)
    assert status == 200
    a.blocked = True


def test_a_wrong_token_in_any_case_is_still_refused(server: Running) -> None:
    for value in (
        "bearer wrong",
        "Basic " + METRICS_TOKEN,
        METRICS_TOKEN,
        f"Bearer{METRICS_TOKEN}",
    ):
        assert scrape(server, authorization=value)[0] == 401, value
    assert scrape(server)[0] == 401


@pytest.mark.parametrize("accept", ["gzip;Q=0", "gzip;q=0.0000", "gzip ;q=0.", "*;q=1, gzip;q=0"])
def test_a_refused_gzip_is_never_sent(server: Running, attack: AttackFn, accept: str) -> None:
    a = attack(f"/metrics with Accept-Encoding '{accept}'", "identity (gzip refused)")
    status, encoding = scrape(
        server, authorization=f"Bearer {METRICS_TOKEN}", accept_encoding=accept
    )
    a.happened = f"{status}, {encoding}"
    assert status == 200 and encoding == "identity"
    a.blocked = True


@pytest.mark.parametrize("accept", ["gzip", "GZip;q=0.5", "identity;q=0.1, gzip", "*"])
def test_an_accepted_gzip_is_still_used(server: Running, accept: str) -> None:
    status, encoding = scrape(
        server, authorization=f"Bearer {METRICS_TOKEN}", accept_encoding=accept
    )
    assert (status, encoding) == (200, "gzip")
