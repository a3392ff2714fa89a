"""`make up` checks before it starts anything: the environment's name, the secrets, and
every configuration with the tools' own messages."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from stack import ROOT, render
from stack.lint import preflight
from stack.settings import StackError

from .conftest import edit


def make(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *args], cwd=ROOT, env={**os.environ, **env},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("target", ["up", "down", "status", "logs", "backup", "restore"])
def test_an_unknown_env_fails_at_once_with_the_valid_ones(target: str) -> None:
    done = make(target, "ENV=qa")
    assert done.returncode != 0
    assert "unknown ENV 'qa': use one of dev stage prod" in done.stderr
    assert not (ROOT / ".run" / "qa").exists()


def test_prod_without_secrets_names_them_and_starts_nothing(tmp_path: Path) -> None:
    done = make("up", "ENV=prod", "RUNTIME=native", STACK_DOTENV=str(tmp_path / "none.env"))
    assert done.returncode != 0
    assert "ENV=prod will not start. not set: GRAFANA_ADMIN_PASSWORD" in done.stderr
    assert "ALERTMANAGER_SMTP_PASSWORD" in done.stderr
    assert "ALERTMANAGER_PAGERDUTY_ROUTING_KEY" in done.stderr  # the pager: no page, no start
    assert "starting" not in done.stdout


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        ("prometheus/rules/database.rules.yml", "(redis_up[45s]) == 0", "(redis_up[45s]) = 0",
         "prometheus configuration for dev is invalid"),
        ("alertmanager/alertmanager.yml", "  receiver: default\n", "  receiver: nobody\n",
         'undefined receiver "nobody"'),
    ],
)  # fmt: skip
def test_bad_configuration_stops_up_with_the_tools_message(
    file: str, old: str, new: str, message: str, repo_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STACK_DOTENV", str(repo_copy / "none.env"))
    edit(repo_copy / file, old, new)
    render.write(repo_copy)
    with pytest.raises(StackError, match=message) as error:
        preflight("dev", root=repo_copy, say=lambda _: None)
    assert "$ " in str(error.value)  # the tool's command line and output follow


def test_stale_generated_files_stop_up(repo_copy: Path) -> None:
    edit(repo_copy / "prometheus" / "prometheus.yml", "job_name: node", "job_name: host")
    with pytest.raises(StackError, match="run `make generate`"):
        preflight("dev", root=repo_copy, say=lambda _: None)
