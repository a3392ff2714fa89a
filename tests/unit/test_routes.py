"""The endpoint label is the route template, read after routing, for every way of routing."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, HTTPException
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from .driver import call, counted, isolated, samples, scrape, value


def test_plain_route_is_labelled_with_its_template() -> None:
    app = FastAPI()

    @app.get("/users/{user_id}")
    async def user(user_id: int) -> dict[str, int]:
        return {"id": user_id}

    isolated(app)
    for uid in (1, 2, 3):
        assert call(app, f"/users/{uid}").status == 200
    assert counted(app, "/users/{user_id}") == 3


def test_routes_declared_after_instrument_are_labelled() -> None:
    app = FastAPI()
    isolated(app)

    @app.get("/late/{x}")
    async def late(x: str) -> str:
        return x

    call(app, "/late/a")
    assert counted(app, "/late/{x}") == 1


def test_included_and_nested_routers_carry_their_prefixes() -> None:
    app = FastAPI()
    inner = APIRouter(prefix="/phones")
    outer = APIRouter(prefix="/users/{user_id}")

    @inner.post("/{phone_id}/verify")
    async def verify(user_id: int, phone_id: int) -> dict[str, bool]:
        return {"ok": True}

    outer.include_router(inner)
    app.include_router(outer, prefix="/v1")
    isolated(app)
    assert call(app, "/v1/users/7/phones/3/verify", method="POST").status == 200
    assert counted(app, "/v1/users/{user_id}/phones/{phone_id}/verify", method="POST") == 1


def test_mounted_sub_apps_are_labelled_with_the_full_template() -> None:
    app = FastAPI()
    sub = FastAPI()
    subsub = FastAPI()

    @subsub.get("/deep/{key}")
    async def deep(key: str) -> str:
        return key

    @sub.get("/items/{item_id}")
    async def item(item_id: int) -> int:
        return item_id

    sub.mount("/nested", subsub)
    app.mount("/sub", sub)
    app.mount("/tenants/{tenant}", sub)
    isolated(app)
    call(app, "/sub/items/1")
    call(app, "/sub/items/2")
    call(app, "/sub/nested/deep/k")
    for tenant in ("a", "b", "c"):
        call(app, f"/tenants/{tenant}/items/9")
    text = scrape(app)
    assert (
        value(
            text, "http_requests_total", method="GET", endpoint="/sub/items/{item_id}", status="200"
        )
        == 2
    )
    assert (
        value(
            text,
            "http_requests_total",
            method="GET",
            endpoint="/sub/nested/deep/{key}",
            status="200",
        )
        == 1
    )
    assert (
        value(
            text,
            "http_requests_total",
            method="GET",
            endpoint="/tenants/{tenant}/items/{item_id}",
            status="200",
        )
        == 3
    )


def test_unknown_path_inside_a_mount_is_unmatched() -> None:
    app = FastAPI()
    sub = FastAPI()

    @sub.get("/known")
    async def known() -> str:
        return "ok"

    app.mount("/sub", sub)
    isolated(app)
    assert call(app, "/sub/unknown/123").status == 404
    assert counted(app, "<unmatched>", "404") == 1


def test_opaque_mounted_app_is_labelled_with_the_mount_path() -> None:
    async def files(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("file")(scope, receive, send)

    app = FastAPI()
    app.mount("/static", files)
    isolated(app)
    call(app, "/static/css/site.css")
    call(app, "/static/js/app.js")
    assert counted(app, "/static/{path}") == 2


def test_root_path_deployment_labels_without_the_prefix() -> None:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> int:
        return item_id

    isolated(app)
    assert call(app, "/items/5", root_path="/api").status == 200
    assert call(app, "/metrics", root_path="/api").status == 200
    assert counted(app, "/items/{item_id}") == 1


def test_root_path_with_a_mount_labels_the_mounted_template() -> None:
    app = FastAPI()
    sub = FastAPI()

    @sub.get("/things/{tid}")
    async def thing(tid: int) -> int:
        return tid

    app.mount("/sub", sub)
    isolated(app)
    assert call(app, "/sub/things/3", root_path="/proxy").status == 200
    assert counted(app, "/sub/things/{tid}") == 1


def test_method_not_allowed_keeps_the_route_template() -> None:
    app = FastAPI()

    @app.get("/only-get/{x}")
    async def only_get(x: int) -> int:
        return x

    isolated(app)
    assert call(app, "/only-get/1", method="DELETE").status == 405
    assert counted(app, "/only-get/{x}", "405", method="DELETE") == 1


def test_http_exception_keeps_the_route_template() -> None:
    app = FastAPI()

    @app.get("/users/{user_id}")
    async def user(user_id: int) -> None:
        raise HTTPException(404, "no such user")

    isolated(app)
    assert call(app, "/users/404").status == 404
    assert counted(app, "/users/{user_id}", "404") == 1


class DenyAll:
    """Answers 401 before routing, like an auth middleware rejecting a request."""

    def __init__(self, app: object) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("no", status_code=401)(scope, receive, send)


def test_response_from_middleware_before_routing_finds_the_route() -> None:
    app = FastAPI(middleware=[Middleware(DenyAll)])

    @app.get("/private/{doc_id}")
    async def private(doc_id: int) -> int:
        return doc_id

    isolated(app)
    assert call(app, "/private/1").status == 401
    assert call(app, "/nowhere/1").status == 401
    text = scrape(app)
    assert (
        value(text, "http_requests_total", method="GET", endpoint="/private/{doc_id}", status="401")
        == 1
    )
    assert (
        value(text, "http_requests_total", method="GET", endpoint="<unmatched>", status="401") == 1
    )


def test_one_router_included_twice_keeps_each_prefix() -> None:
    app = FastAPI()
    router = APIRouter()

    @router.get("/orders/{order_id}")
    async def order(order_id: int) -> int:
        return order_id

    app.include_router(router, prefix="/v1")
    app.include_router(router, prefix="/v2")
    isolated(app)
    call(app, "/v1/orders/1")
    call(app, "/v2/orders/1")
    call(app, "/v2/orders/2")
    assert counted(app, "/v1/orders/{order_id}") == 1
    assert counted(app, "/v2/orders/{order_id}") == 2


def test_plain_starlette_app_with_mounts_is_labelled() -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount, Route, Router

    async def hello(request: object) -> PlainTextResponse:
        return PlainTextResponse("hi")

    async def files(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("file")(scope, receive, send)

    api = Router([Route("/users/{uid:int}", hello)])
    app = Starlette(
        routes=[Route("/", hello), Mount("/api", routes=api.routes), Mount("/assets", files)]
    )
    isolated(app)  # type: ignore[arg-type]
    for path in ("/", "/api/users/1", "/api/users/2", "/assets/a.png", "/api/nope"):
        call(app, path)
    text = scrape(app)  # type: ignore[arg-type]
    for endpoint, status, count in (
        ("/", "200", 1),
        ("/api/users/{uid}", "200", 2),
        ("/assets/{path}", "200", 1),
        ("<unmatched>", "404", 1),
    ):
        assert (
            value(text, "http_requests_total", method="GET", endpoint=endpoint, status=status)
            == count
        ), endpoint


def test_plain_starlette_routes_in_a_fastapi_app_are_labelled() -> None:
    app = FastAPI()

    async def legacy(request: object) -> PlainTextResponse:
        return PlainTextResponse("old")

    app.add_route("/legacy/{code}", legacy)
    isolated(app)
    for path in ("/docs", "/openapi.json", "/legacy/a", "/legacy/b", "/nope"):
        call(app, path)
    text = scrape(app)
    for endpoint, status, n in (
        ("/docs", "200", 1),
        ("/openapi.json", "200", 1),
        ("/legacy/{code}", "200", 2),
        ("<unmatched>", "404", 1),
    ):
        assert (
            value(text, "http_requests_total", method="GET", endpoint=endpoint, status=status) == n
        ), endpoint


def test_a_404_inside_a_mount_is_not_given_to_a_later_catch_all() -> None:
    app = FastAPI()
    api = FastAPI()

    @api.get("/users")
    async def users() -> list[str]:
        return []

    app.mount("/api", api)

    @app.get("/{full_path:path}")
    async def spa(full_path: str) -> str:
        return "index.html"

    app_with_auth = FastAPI(middleware=[Middleware(DenyAll)])
    app_with_auth.mount("/api", api)

    @app_with_auth.get("/{full_path:path}")
    async def spa2(full_path: str) -> str:
        return "index.html"

    isolated(app)
    isolated(app_with_auth)
    assert call(app, "/api/nope").status == 404
    assert call(app, "/about").status == 200
    assert counted(app, "<unmatched>", "404") == 1
    assert counted(app, "/{full_path}") == 1
    assert call(app_with_auth, "/api/nope").status == 401
    assert counted(app_with_auth, "<unmatched>", "401") == 1


def test_a_route_that_cannot_be_matched_again_is_still_counted() -> None:
    from starlette.routing import Match, Route

    class HttpsOnly(Route):
        def matches(self, scope: Scope) -> tuple[Match, Scope]:
            if scope["scheme"] != "https":  # a KeyError on a scope without "scheme"
                return Match.NONE, {}
            return super().matches(scope)

    async def secret(request: object) -> PlainTextResponse:
        return PlainTextResponse("s")

    app = FastAPI(middleware=[Middleware(DenyAll)])
    app.router.routes.append(HttpsOnly("/secret", secret))
    isolated(app)
    assert call(app, "/secret").status == 401
    text = scrape(app)
    assert value(text, "http_requests_in_progress", method="GET") == 0
    assert sum(v for (name, _), v in samples(text).items() if name == "http_requests_total") == 1


def test_a_route_whose_matching_raises_is_counted_as_unmatched() -> None:
    from starlette.routing import Match, Route

    class Fragile(Route):
        def matches(self, scope: Scope) -> tuple[Match, Scope]:
            raise RuntimeError("matching bug")

    async def page(request: object) -> PlainTextResponse:
        return PlainTextResponse("p")

    app = FastAPI(middleware=[Middleware(DenyAll)])
    app.router.routes.append(Fragile("/page", page))
    isolated(app)
    assert call(app, "/page").status == 401  # the request itself is unaffected
    assert counted(app, "<unmatched>", "401") == 1
    assert value(scrape(app), "http_requests_in_progress", method="GET") == 0
