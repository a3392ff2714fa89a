"""Route templates for the ``endpoint`` label, read after routing.

The router leaves the matched route in ``scope["route"]`` (the deepest one when
the request crossed mounted sub-applications) and marks the scope with
``scope["router"]`` once routing ran. FastAPI 0.16x includes routers lazily: the
route then keeps its router-relative path, and the full one sits in the scope's
effective route context. From that:

- no mount crossed: the template is the route's ``path_format`` (an attribute read);
- mounts crossed: the request is matched against the route tree once to find the
  mount prefixes, then cached per route and concrete mount prefix;
- routing ran and matched nothing (404, slash redirect): ``<unmatched>``
  (for a mount, found by matching: an opaque mounted app is ``<prefix>/{path}``);
- routing never ran (another middleware answered first, e.g. a 401): the tree is
  matched to find the route the request was meant for.

Templates use ``path_format`` (``/files/{name}``, converters dropped), the form
OpenTelemetry's ``http.route`` uses too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute, Host, Match, Mount

from .labels import UNMATCHED

_MAX_CACHE = 4096
_MOUNTS = (Mount, Host)
# what routing adds to a scope; removed to match a request again from the top
_ROUTING_KEYS = frozenset(
    ("route", "endpoint", "path_params", "router", "app_root_path", "fastapi", "app")
)


def leaf_template(route: Any, scope: dict[str, Any]) -> str | None:
    """The template of the route the router chose, relative to the app it lives in."""
    context = scope.get("fastapi", {}).get("effective_route_context")
    if context is not None and getattr(context, "original_route", None) is route:
        return context.path_format  # type: ignore[no-any-return]
    return getattr(route, "path_format", None)


def match_template(routes: Sequence[BaseRoute], scope: dict[str, Any]) -> str | None:
    """Match ``scope`` against ``routes`` as the router does; return the full template."""
    partial: str | None = None
    for route in routes:
        match, template = _match_route(route, scope)
        if match is Match.FULL:
            return template
        if match is Match.PARTIAL and partial is None:  # method not allowed
            partial = template
    return partial


def _match_route(route: Any, scope: dict[str, Any]) -> tuple[Match, str | None]:
    included = getattr(route, "_match", None)
    if included is not None:  # a router FastAPI included lazily
        match, child, leaf, context = included(scope)
        if match is Match.NONE or leaf is None:
            return Match.NONE, None
        if context is not None and not isinstance(leaf, _MOUNTS):
            return match, context.path_format
        return _match_route(leaf, {**scope, **child})
    match, child = route.matches(scope)
    if match is Match.NONE:
        return match, None
    if isinstance(route, _MOUNTS):
        prefix = route.path_format.removesuffix("/{path}") if isinstance(route, Mount) else ""
        if not route.routes:  # an opaque ASGI app (static files, WSGI, ...)
            return match, prefix + "/{path}"
        inner = match_template(route.routes, {**scope, **child})
        # the router stops at a matching mount even when nothing inside it matches
        return match, None if inner is None else prefix + inner
    return match, getattr(route, "path_format", None)


class TemplateResolver:
    """Turns a routed scope into its route template; see the module docstring."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self._routes = routes
        self._cache: dict[tuple[Any, ...], str] = {}

    def endpoint(self, scope: dict[str, Any], entry_root_path: str) -> str:
        route = scope.get("route")
        if route is None:
            if "router" not in scope:  # answered before routing (an auth middleware's 401)
                return self._match(scope, entry_root_path)
            if "endpoint" not in scope:  # routed, nothing matched (404, slash redirect)
                return UNMATCHED
            # FastAPI's router leaves "route" unset for plain Starlette routes (docs,
            # openapi.json, add_route) and for mounts: matched once, then cached.
            return self._cached(scope["endpoint"], scope, entry_root_path)
        mounted = isinstance(route, _MOUNTS)
        if scope.get("root_path", "") == entry_root_path and not mounted:
            return leaf_template(route, scope) or UNMATCHED  # the common, fast case
        if mounted and route.routes:
            return UNMATCHED  # Starlette: the mounted app's router found nothing
        return self._cached(route, scope, entry_root_path)

    def _cached(self, anchor: object, scope: dict[str, Any], entry_root_path: str) -> str:
        """Match once per route (or endpoint), concrete mount prefix and parameter names."""
        crossed = scope.get("root_path", "")[len(entry_root_path) :]
        params = scope.get("path_params")
        key = (
            id(anchor),
            crossed,
            tuple(params) if params else "",
            "" if crossed else scope["path"],
        )
        template = self._cache.get(key)
        if template is None:
            template = self._match(scope, entry_root_path)
            if len(self._cache) >= _MAX_CACHE:
                self._cache.clear()
            self._cache[key] = template
        return template

    def _match(self, scope: dict[str, Any], entry_root_path: str) -> str:
        probe = {k: v for k, v in scope.items() if k not in _ROUTING_KEYS}
        probe["root_path"] = entry_root_path
        return match_template(self._routes, probe) or UNMATCHED
