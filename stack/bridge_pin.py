"""Pins the MAC address of each bridge the local engine creates. Left to the kernel, a bridge
takes the lowest MAC of its ports, so it changes as containers join; containers that already
resolved the gateway keep its old MAC until their neighbour entry expires (15-45 s), and
meanwhile their DNS (aardvark-dns answers on the gateway) and outside traffic are lost:
Prometheus scraped no target by name for up to 50 s after `up`. netavark 1.9 pins the MAC
itself (containers/netavark#833); Debian 12's 1.4 does not, so this does it as each bridge
appears, before the containers on it have resolved it.

    python -m stack.bridge_pin --engine-pid PID --engine-start-time TICKS

It exits when the engine process (the podman API service) is gone.
"""

from __future__ import annotations

import select
import signal
import subprocess
import sys
from pathlib import Path

from stack.processes import followed_engine

NET = Path("/sys/class/net")
PREFIX = "podman"  # netavark's bridges: podman0 (the default network), podman1, ...
SET_BY_USER = "3"  # addr_assign_type NET_ADDR_SET: the kernel no longer changes it
NONE = "00:00:00:00:00:00"  # a bridge whose ports have all gone: the next port's, then pinned
SWEEP = 1.0  # seconds between sweeps without a link event


def unpinned(net: Path = NET) -> dict[str, str]:
    """{bridge: its MAC now} for the engine's bridges whose MAC the kernel may still change."""
    found = {}
    for link in net.glob(PREFIX + "*"):
        try:
            if not (link / "bridge").is_dir():
                continue
            pinned = (link / "addr_assign_type").read_text().strip() == SET_BY_USER
            mac = (link / "address").read_text().strip()
        except OSError:  # removed meanwhile
            continue
        if not pinned and mac != NONE:
            found[link.name] = mac
    return found


def pin(net: Path = NET, say=print) -> None:
    """Each unpinned bridge's MAC set to the one it has: from then on it is the user's."""
    for bridge, mac in unpinned(net).items():
        done = subprocess.run(
            ["ip", "link", "set", "dev", bridge, "address", mac],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
        say(f"{bridge}: MAC {mac} pinned" if done.returncode == 0
            else f"{bridge}: {done.stderr.strip() or 'ip link set failed'}")  # fmt: skip


def main() -> None:
    engine = followed_engine(__doc__.splitlines()[0])
    # stopped by PID (SIGTERM): leave through the `finally` below, which ends `ip monitor` too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    say = lambda line: print(line, flush=True)  # noqa: E731
    # a line per link event: a bridge is pinned within milliseconds of its creation
    with subprocess.Popen(["ip", "-oneline", "monitor", "link"], stdout=subprocess.PIPE) as events:
        assert events.stdout is not None
        try:
            while engine.alive() and events.poll() is None:
                pin(say=say)
                ready, _, _ = select.select([events.stdout], [], [], SWEEP)
                if ready:
                    events.stdout.readline()
        finally:
            events.terminate()
    if events.returncode not in (0, -15, None):
        sys.exit(f"ip monitor ended: {events.returncode}")


if __name__ == "__main__":
    main()
