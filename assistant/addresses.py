"""The IPv4 addresses of this machine's (this container's) interfaces: the Host names a
replica answers beside its configured ones when ``allow_own_addresses`` is set, since
Prometheus scrapes each replica by the address its DNS discovery found."""

from __future__ import annotations

import contextlib
import fcntl
import socket
import struct

SIOCGIFADDR = 0x8915  # Linux: an interface's IPv4 address


def own_addresses() -> tuple[str, ...]:
    """Every interface's IPv4 address (loopback included), in interface order; none where
    the system cannot say (not Linux)."""
    found: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            with contextlib.suppress(OSError):
                request = struct.pack("256s", name.encode()[:15])
                reply = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, request)
                found.append(socket.inet_ntoa(reply[20:24]))
    return tuple(dict.fromkeys(found))
