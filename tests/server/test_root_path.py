"""An app served under a root path: route templates without the prefix, /metrics under it."""

from __future__ import annotations

import pytest

from .conftest import PID_HEADER, Scrape, StartServer, parse

pytestmark = pytest.mark.server

# uvicorn --root-path /api is for a proxy that strips /api: uvicorn prepends it again, so
# the client's /items/5 reaches the app as path /api/items/5 with root_path /api.
# FastAPI(root_path="/api") is for a proxy that forwards /api/items/5 unchanged.
SETUPS = {
    "uvicorn-root-path": ({"args": ["--root-path", "/api"]}, ""),
    "app-root-path": ({"env": {"TEST_APP_ROOT_PATH": "/api"}}, "/api"),
}


@pytest.mark.parametrize("setup", list(SETUPS))
def test_root_path_requests_are_labelled_by_route_template(
    start_server: StartServer, setup: str
) -> None:
    options, client_prefix = SETUPS[setup]
    server = start_server(**options)

    assert server.get(f"{client_prefix}/items/5").json() == {"item_id": 5}

    response = server.get(f"{client_prefix}/metrics")
    slash = server.get(f"{client_prefix}/metrics/")
    assert response.status_code == 200, (response.status_code, response.headers)
    assert response.headers["content-type"].startswith("text/plain")
    assert "location" not in response.headers
    assert slash.status_code == 404, "only the exact metrics path is served, no redirect"

    s = Scrape(parse(response.text), int(response.headers[PID_HEADER]), response.text)
    requests = {
        (x.labels["endpoint"], x.labels["status"]): x.value for x in s.select("http_requests_total")
    }
    # the /metrics/ 404 came after this scrape; the scrapes themselves are not counted
    assert requests == {("/items/{item_id}", "200"): 1.0}, requests
    assert s.total("http_request_duration_seconds_count", endpoint="/items/{item_id}") == 1
