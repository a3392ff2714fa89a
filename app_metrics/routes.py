"""Route templates for the ``endpoint`` label, read after routing.

Starlette's router writes the matched route into ``scope["route"]`` (the deepest
one, when the request went through mounted sub-applications) and marks the scope
with ``scope["router"]`` once routing ran. From that:

- no mount crossed: the template is ``route.path`` (a single attribute read);
- mounts crossed: the full template (mount prefixes included) is found by
  matching the request against the route tree once, then cached per route and
  concrete mount prefix;
- routing ran and matched nothing (404, slash redirect): ``<unmatched>``;
- routing never ran (another middleware answered first, e.g. a 401): the tree
  is matched to find the route the request was meant for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute, Host, Match, Mount

from .labels import UNMATCHED

_MAX_CACHE = 4096


def match_template(routes: Sequence[BaseRoute], scope: dict[str, Any]) -> str | None:
    """Match ``scope`` against ``routes`` the way the router does; return the full template."""
    partial: str | None = None
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.NONE:
            continue
        if isinstance(route, Mount | Host):
            inner = route.routes
            if not inner:  # an opaque ASGI app (static files, WSGI, ...)
                return _mount_prefix(route) + "/{path:path}"
            found = match_template(inner, {**scope, **child})
            return None if found is None else _mount_prefix(route) + found
        path = getattr(route, "path", None)
        if match is Match.FULL:
            return path
        if partial is None:  # method not allowed: still the route's template
            partial = path
    return partial


def _mount_prefix(route: Mount | Host) -> str:
    return route.path if isinstance(route, Mount) else ""


class TemplateResolver:
    """Turns a routed scope into its route template; see the module docstring."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self._routes = routes
        self._mounted: dict[tuple[int, str], str] = {}

    def endpoint(self, scope: dict[str, Any], entry_root_path: str) -> str:
        route = scope.get("route")
        if route is None:
            if "router" in scope:
                return UNMATCHED
            return self._match(scope, entry_root_path)
        root_path = scope.get("root_path", "")
        if root_path == entry_root_path and not isinstance(route, Mount | Host):
            return route.path  # type: ignore[no-any-return]
        if isinstance(route, Mount | Host) and route.routes:
            return UNMATCHED  # the mounted router found nothing
        key = (id(route), root_path[len(entry_root_path) :])
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
