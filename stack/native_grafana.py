"""Grafana in the native runtime (only where a grafana binary is installed): its admin's
password from the secret, at its first start and on every later one.

In Compose, the image's /run.sh reads ``GF_*__FILE`` files into the environment and
grafana/entrypoint.sh resets the admin's password on an existing database; natively the binary
runs alone, so both happen here.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

from .native_config import Component, Layout
from .settings import StackError


def grafana_file_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """``GF_X__FILE=path`` as ``GF_X=$__file{path}``: the binary ignores the first (its admin
    would be admin/admin) and expands the second itself, so the value never enters the
    environment."""
    found = {k: v for k, v in environ.items() if not (k.startswith("GF_") and k.endswith("__FILE"))}
    for key, path in environ.items():
        if key not in found:
            found[key.removesuffix("__FILE")] = f"$__file{{{path}}}"
    return found


def reset_grafana_admin(component: Component, where: Layout) -> None:
    """Grafana sets its admin's password only when it creates its database: on an existing
    one, set it from the secret first (`grafana cli`, the password on its standard input)."""
    if not (Path(component.env["GF_PATHS_DATA"]) / "grafana.db").exists():
        return
    binary = component.argv[0]  # grafana (cli: a subcommand), or grafana-server (grafana-cli)
    cli = [str(Path(binary).with_name("grafana-cli"))] if binary.endswith("-server") else [
        binary, "cli"]  # fmt: skip
    argv = [*cli, "--homepath", "/usr/share/grafana", "admin", "reset-admin-password",
            "--password-from-stdin"]  # fmt: skip
    with (where.run_dir / "secrets" / "grafana_admin_password").open() as secret:
        done = subprocess.run(
            argv, stdin=secret, env=component.env, capture_output=True, text=True, timeout=120,
            check=False, user=component.user,
        )  # fmt: skip
    if done.returncode != 0:
        raise StackError(
            f"grafana: resetting the admin password failed:\n{done.stdout}{done.stderr}"
        )
