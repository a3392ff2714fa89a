"""What is published and what is not: the app-metrics wheel is the app_metrics package alone,
described by its own README; the repository's tooling (stack, assistant, tests) reaches .venv
through the checkout itself, never through the wheel."""

from __future__ import annotations

import email
import email.message
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
DIST_INFO = f"app_metrics-{PROJECT['version']}.dist-info"
# local state a build must not see (a checkout's stale build/lib would get into the wheel)
LOCAL_STATE = shutil.ignore_patterns(
    ".git", ".venv", ".run", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    """The wheel pip builds from a copy of the checkout (every top-level folder included)."""
    tmp = tmp_path_factory.mktemp("wheel")
    shutil.copytree(REPO, tmp / "checkout", ignore=LOCAL_STATE, symlinks=True)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
         "--wheel-dir", str(tmp / "dist"), str(tmp / "checkout")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (path,) = (tmp / "dist").glob("*.whl")
    with zipfile.ZipFile(path) as archive:
        yield archive


def _metadata(wheel: zipfile.ZipFile) -> email.message.Message:
    return email.message_from_string(wheel.read(f"{DIST_INFO}/METADATA").decode())


def test_the_wheel_holds_the_app_metrics_package_alone(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    assert {name.split("/")[0] for name in names} == {"app_metrics", DIST_INFO}
    modules = [f"app_metrics/{p.name}" for p in (REPO / "app_metrics").glob("*.py")]
    package = sorted(name for name in names if name.startswith("app_metrics/"))
    assert package == sorted([*modules, "app_metrics/py.typed"])


def test_the_wheel_is_described_by_the_package_readme(wheel: zipfile.ZipFile) -> None:
    metadata = _metadata(wheel)
    assert metadata["Name"] == "app-metrics"
    assert metadata["Description-Content-Type"] == "text/markdown"
    readme = (REPO / "app_metrics" / "README.md").read_text()
    assert metadata.get_payload().strip() == readme.strip()


def test_the_wheel_needs_the_library_dependencies_only(wheel: zipfile.ZipFile) -> None:
    metadata = _metadata(wheel)
    # no dev or service extra published: only otel, the library's own optional dependency
    assert metadata.get_all("Provides-Extra") == ["otel"]
    required = sorted(str(Requirement(r)) for r in metadata.get_all("Requires-Dist"))
    otel = [f'{r}; extra == "otel"' for r in PROJECT["optional-dependencies"]["otel"]]
    assert required == sorted(str(Requirement(r)) for r in (*PROJECT["dependencies"], *otel))


def test_the_checkout_is_on_the_venv_path_from_any_directory(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import app_metrics, assistant.traffic, stack.lint, tests.unit"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"run make venv (it writes the checkout's .pth):\n{done.stderr}"
