"""``promtool check metrics`` finds no problem in the multiprocess exposition."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import StartServer, scrape_every_worker, send_requests

PROMTOOL = shutil.which("promtool")

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(
        PROMTOOL is None,
        reason="promtool is not on PATH (it ships in Debian's 'prometheus' package)",
    ),
]


def test_promtool_accepts_the_multiprocess_exposition(
    start_server: StartServer, tmp_path: Path
) -> None:
    assert PROMTOOL is not None
    server = start_server(workers=2, mp_dir=tmp_path / "mp")
    # some traffic of each kind: 200s, a 404, a 422, a stream
    send_requests(server, "/pid", 20)
    for path in ("/nope", "/items/not-a-number", "/stream?chunks=2&delay=0"):
        server.get(path)

    first_per_worker = {s.worker_pid: s for s in reversed(scrape_every_worker(server))}
    for pid, s in first_per_worker.items():
        result = subprocess.run(
            [PROMTOOL, "check", "metrics"],
            input=s.text.encode(),
            capture_output=True,
            timeout=30,
        )
        output = (result.stdout + result.stderr).decode(errors="replace")
        assert result.returncode == 0 and not output.strip(), (
            f"promtool exit {result.returncode} on worker {pid}'s scrape:\n{output}"
        )
