"""Adding a plain exporter to a copy of the tree takes four pieces, its Compose service, its
scrape job, its record (with its image pin) and its Containerfile, and nothing else: `make
generate` then writes what is generated (compose/versions.env among it), and the checks, the
native runtime, the local images and the Debian packages all know it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stack import ROOT

from .conftest import edit

SERVICE = """
  json-exporter:
    image: ${JSON_EXPORTER_IMAGE:?compose/versions.env is not loaded}
    <<: [*restart, *logging]
    expose: ["7979"]
    command: ["--config.file=/etc/json_exporter/config.yml"]
    volumes:
      - ../exporters/json/config.yml:/etc/json_exporter/config.yml:ro
    networks: [internal]
    healthcheck:
      test: ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:7979/"]
      interval: 15s
      timeout: 5s
      retries: 3
"""
JOB = """
  - job_name: json
    static_configs:
      - targets: ['json-exporter:7979']
"""
IMAGE = "prometheuscommunity/json-exporter:v0.7.0@sha256:" + "b" * 64
RECORD = f"""
[json-exporter]
runs = "binary"
package = "prometheus-json-exporter"
binary = "prometheus-json-exporter"
version = "0.5.0"
image = "{IMAGE}"
port = "JSON_EXPORTER_PORT"
job = "json"
listen = "--web.listen-address"
"""
CONTAINERFILE = (
    "FROM localhost/stack-debian:bookworm\nRUN apt-get install -y prometheus-json-exporter\n"
)

# run in the copy, with the copy's own stack package
PROBE = """
import json, tempfile
from pathlib import Path
from stack import images, lint, packages, render, settings
from stack.native_config import Layout, components, ports, prometheus_config
from stack.project import Project

work = Path(tempfile.mkdtemp())
layout = Layout("dev", work)
project = Project("dev", lint.stand_in_run_dir("dev", work))
local = ports(project, {})
made = {c.name: c for c in components(project, layout, local, "postgresql+asyncpg://x")}
checks = [c for f in (lint.generated_files, lint.prometheus_configs, lint.compose_files,
                    lint.ports_agree)
          for c in f(project.root, work)]
print(json.dumps({
    "port": local["json-exporter"],
    "argv": made["json-exporter"].argv,
    "job": made["json-exporter"].job,
    "waves": project.start_waves(),
    "scrape": prometheus_config(project, layout, local, set(made)),
    "images": [i.tag for i in images.plan()],
    "packages": packages.runtime_missing(),
    "versions": render.versions_table(),
    "pinned": settings.images(),
    "failed": [f"{c.name}: {c.problems}" for c in checks if c.problems],
}))
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    skip = (".git", ".venv", ".run", "__pycache__", ".pytest_cache", ".ruff_cache", "*.egg-info")
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(*skip))
    return copy


def test_an_exporter_takes_four_authored_pieces_and_everything_else_follows(
    tree: Path, tmp_path: Path
) -> None:
    # the four pieces a person writes
    edit(
        tree / "compose" / "compose.yaml",
        "\n  # ---- monitoring",
        SERVICE + "\n  # ---- monitoring",
    )
    edit(
        tree / "prometheus" / "prometheus.yml", "\n  - job_name: node", JOB + "\n  - job_name: node"
    )
    (tree / "stack" / "services.toml").write_text(
        (tree / "stack" / "services.toml").read_text() + RECORD
    )
    (tree / "images" / "json-exporter").mkdir()
    (tree / "images" / "json-exporter" / "Containerfile").write_text(CONTAINERFILE)
    (tree / "exporters" / "json").mkdir()  # its own settings, as any exporter has
    (tree / "exporters" / "json" / "config.yml").write_text("modules: {}\n")
    # a stand-in for Debian's binary, so the native runtime finds it
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "prometheus-json-exporter").write_text("#!/bin/sh\n")
    (bin_dir / "prometheus-json-exporter").chmod(0o755)
    environ = {**os.environ, "PYTHONPATH": str(tree), "PATH": f"{bin_dir}:{os.environ['PATH']}"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, *args], cwd=tree, env=environ, text=True,
                              capture_output=True, timeout=300, check=False)  # fmt: skip

    generate = run("-m", "stack", "generate")
    assert generate.returncode == 0, generate.stderr
    probe = run("-c", PROBE)
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)

    assert found["failed"] == []  # generated files current, promtool and Compose content
    assert found["port"] == 7979  # the port it exposes
    assert "--web.listen-address=127.0.0.1:7979" in found["argv"]
    assert "--config.file=" + str(tree / "exporters/json/config.yml") in found["argv"]
    assert found["job"] == "json"
    assert "json-exporter" in found["waves"][0]  # no depends_on: the first wave
    assert "job_name: json" in found["scrape"] and "127.0.0.1:7979" in found["scrape"]
    assert "localhost/stack-json-exporter:bookworm" in found["images"]
    assert "JSON_EXPORTER_IMAGE" in found["versions"]
    assert "prometheus-json-exporter 0.5.0" in found["versions"]
    assert found["pinned"]["JSON_EXPORTER_IMAGE"] == IMAGE  # versions.env, as generated
    assert "prometheus-json-exporter" not in found["packages"]  # the stand-in is there
