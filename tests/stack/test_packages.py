"""What `make up` and `make test` install before anything else (stack/packages.py), and what
another user is told instead."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stack import ROOT, apt, packages
from stack.services import debian_binaries


@pytest.fixture
def nothing_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packages.shutil, "which", lambda _: None)
    monkeypatch.setattr(packages.Path, "exists", lambda _: False)


def runtime_packages() -> list[str]:
    """Every record's Debian package, and Compose v1 for the project model."""
    return sorted(set(debian_binaries().values()) | {"docker-compose"})


@pytest.mark.usefixtures("nothing_installed")
def test_up_needs_the_native_runtimes_packages_unless_it_runs_compose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(packages, "venv_missing", lambda: [])
    assert packages.needed("up", "native") == runtime_packages()
    assert packages.needed("up", "compose") == []
    monkeypatch.setattr(packages, "docker_engine_error", lambda: None)  # Docker answers
    assert packages.needed("up", "auto") == []
    monkeypatch.setattr(packages, "docker_engine_error", lambda: "no engine")
    assert packages.needed("up", "auto") == runtime_packages()
    # stage and prod run natively only when asked for: auto refuses there, installing nothing
    assert packages.needed("up", "auto", "prod") == []
    assert packages.needed("up", "native", "prod") == runtime_packages()


@pytest.mark.usefixtures("nothing_installed")
def test_test_needs_the_runtime_the_validator_and_ip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packages, "venv_missing", lambda: [])
    assert packages.needed("test") == sorted([*runtime_packages(), "iproute2"])
    assert "postgresql" in runtime_packages() and "prometheus" in runtime_packages()
    assert packages.needed("venv") == []


def test_debians_python_without_ensurepip_needs_python3_venv(
    monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]
) -> None:
    monkeypatch.setattr(packages.importlib.util, "find_spec", lambda _: None)
    monkeypatch.setattr(packages.sys, "prefix", "/usr")
    assert packages.venv_missing(ROOT / "no-venv-here") == ["python3-venv"]
    assert packages.venv_missing(ROOT / ".venv") == []  # made already: nothing to install
    monkeypatch.setattr(packages.sys, "prefix", "/opt/python")  # not Debian's: no remedy
    assert packages.venv_missing(ROOT / "no-venv-here") == []


def test_another_user_gets_the_exact_command_and_nothing_is_installed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran: list[object] = []
    monkeypatch.setattr(packages, "needed", lambda *_: ["postgresql", "prometheus"])
    monkeypatch.setattr(apt.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(apt.subprocess, "run", lambda *a, **k: ran.append(a))
    assert packages.main(["up", "--runtime", "native"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("make up needs Debian packages that are not installed: postgresql ")
    assert err.rstrip().endswith(
        "  sudo apt-get update && sudo apt-get install -y --no-install-recommends "
        "postgresql prometheus"
    )
    assert ran == []


def test_the_check_runs_on_the_machines_python_without_the_venv() -> None:
    # make calls it before .venv exists: -S leaves site-packages (yaml, ...) out of reach
    done = subprocess.run(
        [sys.executable, "-S", "-m", "stack.packages", "--help"], cwd=ROOT, capture_output=True,
        text=True, check=False, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_make_checks_packages_before_the_venv_and_the_stack() -> None:
    # -n prints the recipes in the order they would run; -W makes .venv look stale
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", "-W", "requirements/dev.lock", "up",
         "RUNTIME=native"], cwd=ROOT, capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    order = [out.index("-m stack.packages up"), out.index("-m venv"), out.index("-m stack up")]
    assert order == sorted(order)
