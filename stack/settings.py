"""The per-environment settings (compose/env/<env>.env) and the image versions
(compose/versions.env, generated from the service records): KEY=VALUE files, read the same way
Compose reads them."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

from . import ENVIRONMENTS, ROOT

COMPOSE_DIR = ROOT / "compose"
VERSIONS_FILE = COMPOSE_DIR / "versions.env"
# single: one of each; ha: a Prometheus pair and an Alertmanager cluster (compose.ha.yaml)
TOPOLOGIES = ("single", "ha")
_LINE = re.compile(r"(?P<key>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)")


class StackError(Exception):
    """A problem the user must fix; its message says what and where."""


def check_environment(env: str) -> str:
    if env not in ENVIRONMENTS:
        raise StackError(f"unknown ENV {env!r}: use one of {', '.join(ENVIRONMENTS)}")
    return env


def check_topology(topology: str) -> str:
    if topology not in TOPOLOGIES:
        raise StackError(f"unknown TOPOLOGY {topology!r}: use one of {', '.join(TOPOLOGIES)}")
    return topology


def topology(env: str, requested: str | None = None, root: Path = ROOT) -> str:
    """``requested`` (make up TOPOLOGY=...), else the environment's TOPOLOGY setting."""
    found = requested or read_env_file(env_file(env, root)).get("TOPOLOGY", "")
    if not found:
        raise StackError(f"compose/env/{env}.env sets no TOPOLOGY ({', '.join(TOPOLOGIES)})")
    return check_topology(found)


def env_file(env: str, root: Path = ROOT) -> Path:
    return root / "compose" / "env" / f"{check_environment(env)}.env"


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines; blank lines and ``#`` comments skipped; one pair of surrounding
    quotes removed. Anything else is an error naming the file and line."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            raise StackError(f"{path}:{number}: expected KEY=VALUE, got {raw!r}")
        value = match["value"]
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[match["key"]] = value
    return values


def environment_settings(env: str, root: Path = ROOT) -> dict[str, str]:
    """The environment's settings plus ENV itself."""
    return {**read_env_file(env_file(env, root)), "ENV": env}


def images(root: Path = ROOT) -> dict[str, str]:
    """``{"PROMETHEUS_IMAGE": "prom/prometheus:v3.5.0@sha256:...", ...}``"""
    return read_env_file(root / VERSIONS_FILE.relative_to(ROOT))


# ---- ${NAME} placeholders (receivers, Prometheus settings) -------------------------------

PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


def placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


def substitute(
    text: str, values: Mapping[str, str], where: str, *, quote: bool = False, partial: bool = False
) -> str:
    """Replace every ``${NAME}``; a name without a value is an error naming ``where``, or,
    with ``partial``, stays as it is. ``quote``: escape values for a double-quoted YAML string."""
    missing = sorted(placeholders(text) - values.keys())
    if missing and not partial:
        raise StackError(f"{where}: no value for {', '.join(missing)}")

    def value(match: re.Match[str]) -> str:
        if match[1] not in values:
            return match[0]
        raw = values[match[1]]
        return json.dumps(raw)[1:-1] if quote else raw

    return PLACEHOLDER.sub(value, text)
