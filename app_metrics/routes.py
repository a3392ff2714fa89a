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
        return (Match.NONE, None) if inner is None else (match, prefix + inner)
    return match, getattr(route, "path_format", None)


class TemplateResolver:
    """Turns a routed scope into its route template; see the module docstring."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self._routes = routes
        self._mounted: dict[tuple[int, str], str] = {}

    def endpoint(self, scope: dict[str, Any], entry_root_path: str) -> str:
        route = scope.get("route")
        if route is None and "router" not in scope:
            return self._match(scope, entry_root_path)
        root_path = scope.get("root_path", "")
        if root_path == entry_root_path:  # no mount crossed: the common, fast case
            template = None if route is None else leaf_template(route, scope)
            return template or UNMATCHED
        if isinstance(route, _MOUNTS) and route.routes:
            return UNMATCHED  # the mounted app's router found nothing
        # A mount was crossed: the route is the mounted app's own (or None when the
        # mounted app is opaque or its router found nothing, under FastAPI's router).
        key = (0 if route is None else id(route), root_path[len(entry_root_path) :])
        template = self._mounted.get(key)
        if template is None:
            template = self._match(scope, entry_root_path)
            if len(self._mounted) >= _MAX_CACHE:
                self._mounted.clear()
            self._mounted[key] = template
        return template

    def _match(self, scope: dict[str, Any], entry_root_path: str) -> str:
        probe = {
            "type": scope["type"],
            "method": scope["method"],
            "path": scope["path"],
            "root_path": entry_root_path,
            "headers": scope.get("headers", []),
        }
        return match_template(self._routes, probe) or UNMATCHED
