"""Debian packages installed with apt-get as root; another user gets the exact command and
nothing is changed. A temporary policy-rc.d keeps the packages' scripts from starting daemons."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from .settings import StackError

POLICY = Path("/usr/sbin/policy-rc.d")


def command(packages: list[str]) -> list[str]:
    return ["apt-get", "install", "-y", "--no-install-recommends", *packages]


def install(packages: list[str], needed_by: str) -> None:
    """``needed_by`` names who needs them ("make up", "the local engine") in every message."""
    if not packages:
        return
    listed = " ".join(packages)
    if os.geteuid() != 0:
        raise StackError(
            f"{needed_by} needs Debian packages that are not installed: {listed}. "
            "Install them as root, then run it again:\n"
            f"  sudo apt-get update && sudo {' '.join(command(packages))}"
        )
    print(f"{needed_by}: installing {len(packages)} Debian packages: {listed}", flush=True)
    begun = time.monotonic()
    added = not POLICY.exists()
    if added:
        POLICY.write_text("#!/bin/sh\nexit 101\n")
        POLICY.chmod(0o755)
    try:
        for step in (["apt-get", "update", "-qq"], [*command(packages), "-qq"]):
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
    print(f"{needed_by}: Debian packages installed in {time.monotonic() - begun:.1f} s", flush=True)
