"""stack/'s layers point one way: the tool runners and the project model at the bottom, what
is generated from them next, the checks and the two runtimes beside each other above, the
command line on top. A module imports from its own layer or below, and the checks and the
runtimes never import each other."""

from __future__ import annotations

import pytest

from .test_import_cycles import REPO, imports

LAYERS = {
    "model": ["stack", "stack.settings", "stack.services", "stack.tools", "stack.processes",
              "stack.apt", "stack.packages", "stack.project", "stack.promql", "stack.runbooks",
              "stack.rules", "stack.webauth", "stack.redis_acl", "stack.yamlfile"],
    "generated": ["stack.dashboards", "stack.catalog", "stack.producers", "stack.render",
                  "stack.secrets", "stack.strength", "stack.postgres_roles"],
    "checks": ["stack.lint", "stack.hardening", "stack.ports", "stack.longterm",
               "stack.vmalert",
               "stack.alert_checks", "stack.runbook_checks", "stack.mutants", "stack.mutation",
               "stack.anomaly"],
    "runtimes": ["stack.native_config", "stack.native", "stack.native_postgres",
                 "stack.native_grafana", "stack.native_user", "stack.compose", "stack.engine",
                 "stack.images", "stack.healthcheck_pump", "stack.bridge_pin", "stack.backup"],
    "command line": ["stack.__main__", "stack.acceptance"],
}  # fmt: skip
RANK = {"model": 0, "generated": 1, "checks": 2, "runtimes": 2, "command line": 3}


def layer_of(module: str) -> str:
    for layer, names in LAYERS.items():
        if any(module == n or module.startswith(f"{n}.") for n in names if n != "stack"):
            return layer
    if module == "stack":
        return "model"
    raise AssertionError(f"{module}: in no layer of LAYERS; add it where it belongs")


def test_every_module_is_in_a_layer() -> None:
    for module in imports(REPO / "stack"):
        layer_of(module)


def test_imports_point_down_and_checks_and_runtimes_stay_apart() -> None:
    wrong = []
    for module, edges in imports(REPO / "stack").items():
        mine = layer_of(module)
        for edge in edges:
            theirs = layer_of(edge.target)
            beside = {mine, theirs} == {"checks", "runtimes"}
            if RANK[theirs] > RANK[mine] or beside:
                wrong.append(f"{module} ({mine}) -> {edge.target} ({theirs})  {edge.where}")
    if wrong:
        pytest.fail("imports against the layers:\n  " + "\n  ".join(wrong), pytrace=False)
