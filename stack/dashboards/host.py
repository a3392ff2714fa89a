"""Host: one machine at a time (the ``instance`` variable: this host's node exporter, or one
of the other hosts' from prometheus/targets/node/), from node_exporter (through the system_*
rules)."""

from __future__ import annotations

from typing import Any

from .shared import dashboard, graph, label_variable, stat

PATH = "infrastructure/host.json"


def build() -> dict[str, Any]:
    host = 'instance=~"$instance"'  # one value; a regular expression, as Grafana fills it
    cores = f'scalar(count(node_cpu_seconds_total{{mode="idle", {host}}}))'
    panels = [
        stat(
            "CPU busy",
            f"max(system_cpu_usage_percent{{{host}}})",
            "percent",
            "Average busy share of every core (system_cpu_usage_percent). Alert: HostCpuHigh.",
        ),
        stat(
            "Memory used",
            f"max(system_memory_usage_bytes{{{host}}})",
            "bytes",
            "Total minus available memory (system_memory_usage_bytes). Alert: HostMemoryPressure.",
        ),
        stat(
            "Fullest file system",
            f"max(system_disk_usage_percent{{{host}}})",
            "percent",
            "Usage of the fullest real file system. Alerts: HostDiskAlmostFull, "
            "HostDiskWillFillIn24h, HostDiskWillFillInHours.",
        ),
        stat("Uptime", f"max(system_uptime_seconds{{{host}}})", "s", "Time since the host booted."),
        graph(
            "CPU by mode",
            "percentunit",
            "Share of CPU time per mode, all cores together (iowait: waiting for the disk).",
            (
                f'sum by (mode) (rate(node_cpu_seconds_total{{mode!="idle", {host}}}'
                f"[$__rate_interval])) / {cores}",
                "{{mode}}",
            ),
        ),
        graph(
            "Load per core",
            "short",
            "1- and 5-minute load divided by the number of cores. Alert: HostLoadHigh above 2.",
            (f"max(node_load1{{{host}}}) / {cores}", "load1"),
            (f"max(node_load5{{{host}}}) / {cores}", "load5"),
        ),
        graph(
            "Memory",
            "bytes",
            "Used (total minus available), available, page cache and buffers (reclaimable, "
            "part of available), and swap in use. Alert: HostMemoryPressure below 10 % "
            "available.",
            (
                f"max(node_memory_MemTotal_bytes{{{host}}})"
                f" - max(node_memory_MemAvailable_bytes{{{host}}})",
                "used",
            ),
            (f"max(node_memory_MemAvailable_bytes{{{host}}})", "available"),
            (
                f"max(node_memory_Cached_bytes{{{host}}})"
                f" + max(node_memory_Buffers_bytes{{{host}}})",
                "cache and buffers",
            ),
            (
                f"max(node_memory_SwapTotal_bytes{{{host}}})"
                f" - max(node_memory_SwapFree_bytes{{{host}}})",
                "swap used",
            ),
        ),
        graph(
            "Disk I/O",
            "Bps",
            "Bytes read and written per second, per block device.",
            (
                f"sum by (device) (rate(node_disk_read_bytes_total{{{host}}}[$__rate_interval]))",
                "{{device}} read",
            ),
            (
                "sum by (device) "
                f"(rate(node_disk_written_bytes_total{{{host}}}[$__rate_interval]))",
                "{{device}} written",
            ),
        ),
        graph(
            "Disk busy",
            "percentunit",
            "Share of time each block device had I/O in flight (node_disk_io_time_seconds_total): "
            "near 100 % the device is saturated and requests queue (CPU iowait rises).",
            (
                "sum by (device) "
                f"(rate(node_disk_io_time_seconds_total{{{host}}}[$__rate_interval]))",
                "{{device}}",
            ),
        ),
        graph(
            "File systems",
            "percent",
            "Usage of each real file system (system_disk_usage_percent).",
            (f"system_disk_usage_percent{{{host}}}", "{{mountpoint}}"),
        ),
        graph(
            "Network",
            "Bps",
            "Bytes per second over every interface but loopback (system_network_io_bytes).",
            (f"system_network_io_bytes{{{host}}}", "{{direction}}"),
        ),
    ]
    instance = label_variable(
        "instance", "Host", 'node_uname_info{job="node"}', "instance", one=True
    )
    return dashboard(
        "assistant-host",
        "Host",
        "One host at a time (this one, or another from prometheus/targets/node/), from "
        "node_exporter.",
        "host",
        panels,
        (instance,),
    )
