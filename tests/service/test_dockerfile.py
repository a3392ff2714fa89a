"""The service's Dockerfile, checked for structure (no Docker engine here to build it)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from stack.settings import images

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "assistant" / "Dockerfile"
CONTAINERFILE = REPO / "images" / "assistant" / "Containerfile"  # the local engine's (make images)
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|API_KEY|PRIVATE_KEY|DSN)", re.IGNORECASE)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        current += stripped[:-1] + " " if stripped.endswith("\\") else stripped
        if not stripped.endswith("\\"):
            keyword, _, args = current.partition(" ")
            out.append((keyword.upper(), args.strip()))
            current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    return out


def final_stage(steps: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (k, _) in enumerate(steps) if k == "FROM")
    return steps[last_from:]


def test_every_instruction_is_known() -> None:
    known = {"ARG", "FROM", "WORKDIR", "COPY", "RUN", "ENV", "USER", "EXPOSE", "HEALTHCHECK",
             "CMD", "LABEL", "ENTRYPOINT"}  # fmt: skip
    for keyword, args in instructions(DOCKERFILE.read_text()):
        assert keyword in known, keyword
        assert args, f"{keyword} without arguments"


def test_base_image_comes_from_the_versions_file_only() -> None:
    # no default to drift from compose/versions.env, where the slim image is pinned (generated)
    steps = instructions(DOCKERFILE.read_text())
    assert ("ARG", "PYTHON_IMAGE") in steps
    assert all(a.startswith("${PYTHON_IMAGE}") for k, a in steps if k == "FROM")
    image = images()["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+@sha256:[0-9a-f]{64}", image), image


def test_runs_as_a_non_root_user_with_a_healthcheck_and_exec_form_cmd() -> None:
    stage = final_stage(instructions(DOCKERFILE.read_text()))
    keywords = [k for k, _ in stage]
    user = next(a for k, a in stage if k == "USER")
    assert user.split(":")[0] not in ("0", "root")
    assert keywords.index("USER") < keywords.index("CMD")
    healthcheck = next(a for k, a in stage if k == "HEALTHCHECK")
    assert "--interval=" in healthcheck and "--timeout=" in healthcheck
    assert json.loads(healthcheck.split("CMD", 1)[1]) == ["python", "-m", "assistant.healthcheck"]
    assert json.loads(next(a for k, a in stage if k == "CMD")) == ["python", "-m", "assistant"]
    assert "8000" in next(a for k, a in stage if k == "EXPOSE")


def test_no_secret_is_baked_into_the_image() -> None:
    for keyword, args in instructions(DOCKERFILE.read_text()):
        if keyword in ("ENV", "ARG", "LABEL"):
            for token in shlex.split(args):
                name = token.split("=", 1)[0]
                assert not SECRET_NAME.search(name), f"{keyword} {name} would bake a secret"
        if keyword == "COPY":
            assert ".env" not in args and "secret" not in args.lower(), args


def test_copied_paths_exist_and_the_context_ignores_local_state() -> None:
    for keyword, args in instructions(DOCKERFILE.read_text()):
        if keyword == "COPY" and not args.startswith("--from"):
            *sources, _ = shlex.split(args)
            for source in sources:
                assert (REPO / source).exists(), source
    ignored = (REPO / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", ".env", ".run", "tests"):
        assert entry in ignored, entry


def test_installs_pinned_versions_without_a_pip_cache() -> None:
    runs = [a for k, a in instructions(DOCKERFILE.read_text()) if k == "RUN" and "pip " in a]
    assert runs
    assert all("--no-cache-dir" in run for run in runs)
    assert any("--constraint requirements/dev.lock" in run for run in runs)


def test_wheels_app_metrics_and_the_service_requirements() -> None:
    # the published wheel is app_metrics alone: the service's dependencies come from its own file
    wheel = next(a for k, a in instructions(DOCKERFILE.read_text()) if k == "RUN" and "wheel" in a)
    assert "." in shlex.split(wheel)
    assert "--requirement assistant/requirements.txt" in wheel


@pytest.mark.parametrize("path", [DOCKERFILE, CONTAINERFILE], ids=["Dockerfile", "Containerfile"])
def test_the_service_code_is_copied_onto_the_python_path(path: Path) -> None:
    stage = final_stage(instructions(path.read_text()))
    env = dict(token.split("=", 1) for k, a in stage if k == "ENV" for token in shlex.split(a))
    assert env["PYTHONPATH"] == "/app"
    copies = [shlex.split(a) for k, a in stage if k == "COPY" and not a.startswith("--from")]
    assert ["assistant", "/app/assistant"] in copies
    assert json.loads(next(a for k, a in stage if k == "CMD")) == ["python", "-m", "assistant"]
