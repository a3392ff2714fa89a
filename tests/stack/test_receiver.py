"""The webhook receiver that records alert notifications (dev and the tests)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from stack import ROOT
from stack.processes import free_port

from .conftest import Process

RECEIVER = str(ROOT / "receiver" / "webhook_receiver.py")


def start(processes: list[Process], tmp_path: Path, port: int) -> str:
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, RECEIVER, "--port", str(port), "--log", str(tmp_path / "n.jsonl")]
    processes.append(Process(argv, tmp_path / f"receiver-{len(processes)}.log", url + "/-/healthy"))
    return url


def post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def notifications(url: str, query: str = "") -> list[dict]:
    with urllib.request.urlopen(f"{url}/notifications{query}", timeout=5) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def test_notifications_are_recorded_and_survive_a_restart(
    processes: list[Process], tmp_path: Path
) -> None:
    port = free_port()
    url = start(processes, tmp_path, port)
    assert post(f"{url}/oncall", b'{"receiver": "oncall", "status": "firing"}') == 200
    assert post(f"{url}/backend", b'{"receiver": "backend", "status": "resolved"}') == 200
    [first] = notifications(url, "?receiver=oncall")
    assert first["path"] == "/oncall" and first["payload"]["status"] == "firing"
    assert len(notifications(url)) == 2
    processes.pop().stop()
    url = start(processes, tmp_path, port)
    assert [n["path"] for n in notifications(url)] == ["/oncall", "/backend"]


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b""])
def test_a_body_that_is_not_a_json_object_is_refused(
    body: bytes, processes: list[Process], tmp_path: Path
) -> None:
    url = start(processes, tmp_path, free_port())
    assert post(f"{url}/x", body) == 400
    assert notifications(url) == []


def test_check_mode_is_the_containers_healthcheck(processes: list[Process], tmp_path: Path) -> None:
    url = start(processes, tmp_path, free_port())
    ok = subprocess.run([sys.executable, RECEIVER, "--check", f"{url}/-/healthy"], check=False)
    assert ok.returncode == 0
    gone = subprocess.run(
        [sys.executable, RECEIVER, "--check", f"http://127.0.0.1:{free_port()}/-/healthy"],
        capture_output=True, check=False,
    )  # fmt: skip
    assert gone.returncode == 1
