"""What only the local engine needs: the bridges of the stack's networks keep their MAC, so a
container never holds a stale one for its gateway (its DNS server: stack/bridge_pin.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .runtimes import Stack

pytestmark = pytest.mark.integration


def engine(*args: str) -> str:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout


def test_every_bridge_keeps_its_mac_and_prometheus_reaches_its_gateways(stack: Stack) -> None:
    if not getattr(stack, "local", False):
        pytest.skip("the local engine's bridges only (natively none; Docker sets each one's MAC)")
    containers = stack.containers()
    networks = {name for c in containers.values() for name in c["NetworkSettings"]["Networks"]}
    bridges = {n["name"]: n for n in json.loads(engine("network", "inspect", *sorted(networks)))}
    macs = {}
    for name, network in bridges.items():
        link = Path("/sys/class/net") / network["network_interface"]
        assert (link / "addr_assign_type").read_text().strip() == "3", f"{name}: MAC not pinned"
        macs[network["subnets"][0]["gateway"]] = (link / "address").read_text().strip()
    prometheus = next(c for c in containers.values() if c["Config"]["Labels"].get(
        "com.docker.compose.service") == "prometheus")  # fmt: skip
    neighbours = subprocess.run(
        ["nsenter", "-t", str(prometheus["State"]["Pid"]), "-n", "ip", "-json", "neigh"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    seen = {n["dst"]: n.get("lladdr") for n in json.loads(neighbours) if n["dst"] in macs}
    assert seen, f"Prometheus has resolved none of its gateways {sorted(macs)}"
    assert all(mac in (None, macs[gateway]) for gateway, mac in seen.items()), (seen, macs)
