"""requirements/dev.lock is what `make lock` writes from the environment the tests run in, and
the ranges the repository declares admit it."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements" / "dev.lock"


def normalised(line: str) -> str:
    name, _, version = line.partition("==")
    return f"{name.lower().replace('_', '-')}=={version}"


def test_the_lock_matches_the_installed_environment() -> None:
    freeze = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    installed = sorted(
        normalised(line) for line in freeze.splitlines()
        if line and not line.startswith(("app-metrics", "app_metrics", "#"))
    )  # fmt: skip
    locked = [line for line in LOCK.read_text().splitlines() if line and not line.startswith("#")]
    assert locked == sorted(locked), "dev.lock is not sorted: run make lock"
    assert locked == installed, "dev.lock and the environment differ: run make lock"


def ranges(path: Path, including: tuple[Path, ...] = ()) -> list[Requirement]:
    """A requirements file's ranges, following its ``-r`` includes (relative to it)."""
    assert path.resolve() not in including, f"{path} includes itself"
    out: list[Requirement] = []
    for line in path.read_text().splitlines():
        line = line.split(" #", 1)[0].strip()
        if line.startswith("-r "):
            included = path.parent / line.removeprefix("-r ").strip()
            out += ranges(included, (*including, path.resolve()))
        elif line and not line.startswith("#"):
            out.append(Requirement(line))
    return out


def test_the_declared_ranges_admit_the_installed_versions() -> None:
    # the library's (pyproject.toml, published), then the sample service's and the tools'
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    declared = [Requirement(r) for r in pyproject["project"]["dependencies"]]
    for extra in pyproject["project"].get("optional-dependencies", {}).values():
        declared += [Requirement(r) for r in extra]
    declared += ranges(REPO / "requirements" / "dev.txt")
    assert {"fastapi", "asyncpg", "pytest"} <= {r.name for r in declared}
    outside = [
        f"{r} (installed {version(r.name)})"
        for r in declared
        if not r.specifier.contains(version(r.name), prereleases=True)
    ]
    assert not outside, f"the lock is outside the declared ranges: {outside}"
