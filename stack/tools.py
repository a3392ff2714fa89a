"""The tools the checks run (promtool, amtool, yamllint, ...): run one and get its message,
and the configuration copies they check."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

from .rules import LOADED


def run(args: list[str], cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    """Run a tool; its combined output if it fails, else an empty string."""
    try:
        done = subprocess.run(
            args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
        )
    except FileNotFoundError:
        return f"{args[0]}: not found"
    if done.returncode == 0:
        return ""
    output = (done.stdout + done.stderr).strip()
    return f"$ {' '.join(args)}  (exit {done.returncode})\n{output}"


def tool(root: Path, name: str) -> str:
    return str(root / {"promtool": "prometheus", "amtool": "alertmanager"}[name] / name)


def checkable(text: str, root: Path, secrets_dir: Path) -> str:
    """A configuration with its container paths mapped onto this machine: mounted secrets
    onto ``secrets_dir``, templates and the rules onto the repository's folders (the rules
    as Prometheus loads them: stamped, in prometheus/generated/rules/)."""
    return (
        text.replace("/run/secrets/", f"{secrets_dir}/")
        .replace("/etc/alertmanager/templates/", f"{root}/alertmanager/templates/")
        .replace("../rules/", f"{root / LOADED}/")
    )


PROMETHEUS_CHECK = ("promtool", "check", "config")
ALERTMANAGER_CHECK = ("amtool", "check-config")


def config_check(
    root: Path, command: tuple[str, ...], copy: Path, text: str, secrets_dir: Path
) -> str:
    """Write ``text`` to ``copy`` with its container paths mapped (``checkable``) and run
    ``command`` (promtool or amtool, then its arguments) on it: the tool's message, or ''."""
    copy.write_text(checkable(text, root, secrets_dir))
    return run([tool(root, command[0]), *command[1:], str(copy)])
