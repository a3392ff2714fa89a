"""Host: the machine under the stack, from node_exporter (through the system_* rules)."""

from __future__ import annotations

from typing import Any

from .shared import dashboard, graph, stat

PATH = "infrastructure/host.json"


def build() -> dict[str, Any]:
    cores = 'scalar(count(node_cpu_seconds_total{mode="idle"}))'
    panels = [
        stat(
            "CPU busy",
            "max(system_cpu_usage_percent)",
            "percent",
            "Average busy share of every core (system_cpu_usage_percent). Alert: HostCpuHigh.",
        ),
        stat(
            "Memory used",
            "max(system_memory_usage_bytes)",
            "bytes",
            "Total minus available memory (system_memory_usage_bytes). Alert: HostMemoryPressure.",
        ),
        stat(
            "Fullest file system",
            "max(system_disk_usage_percent)",
            "percent",
            "Usage of the fullest real file system. Alerts: HostDiskAlmostFull, "
            "HostDiskWillFillIn24h.",
        ),
        stat("Uptime", "max(system_uptime_seconds)", "s", "Time since the host booted."),
        graph(
            "CPU by mode",
            "percentunit",
            "Share of CPU time per mode, all cores together (iowait: waiting for the disk).",
            (
                'sum by (mode) (rate(node_cpu_seconds_total{mode!="idle"}[$__rate_interval]))'
                f" / {cores}",
                "{{mode}}",
            ),
        ),
        graph(
            "Load per core",
            "short",
            "1- and 5-minute load divided by the number of cores. Alert: HostLoadHigh above 2.",
            (f"max(node_load1) / {cores}", "load1"),
            (f"max(node_load5) / {cores}", "load5"),
        ),
        graph(
            "File systems",
            "percent",
            "Usage of each real file system (system_disk_usage_percent).",
            ("system_disk_usage_percent", "{{mountpoint}}"),
        ),
        graph(
            "Network",
            "Bps",
            "Bytes per second over every interface but loopback (system_network_io_bytes).",
            ("system_network_io_bytes", "{{direction}}"),
        ),
    ]
    return dashboard(
        "assistant-host", "Host", "The host under the stack, from node_exporter.", "host", panels
    )
