"""Finding 8: what a real ``python -m assistant`` shows to whom. The API's map (``/docs``,
``/redoc``, ``/openapi.json``) is off unless asked for (the dev stack); a Host header that is
not one of the configured names (DNS rebinding: a web page whose name now resolves to
127.0.0.1, reaching the API with dev's example tokens) is refused, ``/metrics`` included."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from assistant.addresses import own_addresses
from tests.security.conftest import Attack
from tests.security.processes import TOKEN, Running, assistant, exchange, request

pytestmark = pytest.mark.server

AttackFn = Callable[[str, str], Attack]
API = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
USER = b'{"email": "ann@example.com", "name": "Ann"}'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with assistant(tmp_path_factory.mktemp("exposure")) as running:  # stage and prod's settings
        yield running


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
def test_the_api_map_is_off_by_default(server: Running, attack: AttackFn, path: str) -> None:
    a = attack(f"GET {path} (stage, prod)", "404")
    reply = exchange(server.port, request("GET", path))
    a.happened = str(reply.status)
    assert reply.status == 404
    a.blocked = True


def test_the_dev_stack_may_turn_the_map_on(tmp_path: Path) -> None:
    with assistant(tmp_path, ASSISTANT_API_DOCS="true") as dev:
        for path in ("/docs", "/openapi.json"):
            assert exchange(dev.port, request("GET", path)).status == 200, path


@pytest.mark.parametrize(
    ("path", "body"), [("/users", USER), ("/metrics", b""), ("/health/overall", b"")]
)
def test_a_rebound_host_name_is_refused(
    server: Running, attack: AttackFn, path: str, body: bytes
) -> None:
    method = "POST" if body else "GET"
    a = attack(f"{method} {path} with Host: attacker.example", "400")
    headers = {**API, "Host": f"attacker.example:{server.port}"}
    reply = exchange(server.port, request(method, path, headers, body))
    a.happened = str(reply.status)
    assert reply.status == 400
    a.blocked = True


def test_the_configured_names_are_served(tmp_path: Path) -> None:
    names = "localhost,127.0.0.1,api,worker"  # Compose's: Prometheus scrapes api:8000
    with assistant(tmp_path, ASSISTANT_ALLOWED_HOSTS=names) as running:
        for host in ("api:8000", "worker:8000", f"localhost:{running.port}", "127.0.0.1"):
            reply = exchange(running.port, request("GET", "/metrics", {"Host": host}))
            assert reply.status == 200, host
        reply = exchange(running.port, request("GET", "/metrics", {"Host": "api.evil:8000"}))
        assert reply.status == 400


def test_a_replica_answers_its_own_addresses_only_when_told(tmp_path: Path) -> None:
    """Compose's replicas are scraped by the address DNS discovery finds (the Host header
    is that IP): ASSISTANT_ALLOW_OWN_ADDRESSES adds the machine's own, no other address."""
    own = own_addresses()
    assert "127.0.0.1" in own
    names = "localhost,api,worker"
    (tmp_path / "own").mkdir()
    (tmp_path / "names").mkdir()
    with assistant(tmp_path / "own", ASSISTANT_ALLOWED_HOSTS=names,
                   ASSISTANT_ALLOW_OWN_ADDRESSES="true") as running:  # fmt: skip
        for host in own:
            reply = exchange(running.port, request("GET", "/metrics", {"Host": f"{host}:8000"}))
            assert reply.status == 200, host
        reply = exchange(running.port, request("GET", "/metrics", {"Host": "192.0.2.254:8000"}))
        assert reply.status == 400  # not this machine's
    with assistant(tmp_path / "names", ASSISTANT_ALLOWED_HOSTS=names) as running:
        reply = exchange(running.port, request("GET", "/metrics", {"Host": "127.0.0.1:8000"}))
        assert reply.status == 400
