"""Debian packages the runtimes need, installed with apt-get as root (a non-root user gets the
exact command). A temporary policy-rc.d keeps the packages' scripts from starting daemons."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .settings import StackError

POLICY = Path("/usr/sbin/policy-rc.d")


def install(packages: list[str], why: str = "") -> None:
    """``why``: what needs root, said before the command when not root."""
    if not packages:
        return
    command = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    if os.geteuid() != 0:
        raise StackError(
            f"{why}Debian packages missing: {' '.join(packages)}. As root, run:\n"
            f"  apt-get update && {' '.join(command)}"
        )
    print(f"installing {' '.join(packages)} (apt-get)", flush=True)
    added = not POLICY.exists()
    if added:
        POLICY.write_text("#!/bin/sh\nexit 101\n")
        POLICY.chmod(0o755)
    try:
        for step in (["apt-get", "update", "-qq"], [*command, "-qq"]):
            done = subprocess.run(
                step,
                capture_output=True,
                text=True,
                check=False,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            )
            if done.returncode != 0:
                raise StackError(f"{' '.join(step)} failed:\n{done.stdout}{done.stderr}")
    finally:
        if added:
            POLICY.unlink()
