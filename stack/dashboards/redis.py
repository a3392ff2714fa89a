"""Redis: memory, clients, keys and commands, as redis_exporter sees them."""

from __future__ import annotations

from typing import Any

from .shared import dashboard, graph, stat

PATH = "infrastructure/redis.json"


def build() -> dict[str, Any]:
    panels = [
        stat(
            "Up",
            "min(redis_up)",
            "bool",
            "1 while redis_exporter reaches Redis. Alert: RedisDown.",
        ),
        stat(
            "Memory used",
            "max(redis_memory_used_bytes)",
            "bytes",
            "Memory Redis uses. Alert: RedisMemoryNearLimit above 90 % of maxmemory.",
        ),
        stat("Clients", "max(redis_connected_clients)", "short", "Connected clients."),
        stat("Keys", "sum(redis_db_keys)", "short", "Keys in every database."),
        graph(
            "Commands",
            "ops",
            "Commands processed per second.",
            ("sum(rate(redis_commands_processed_total[$__rate_interval]))", "commands"),
        ),
        graph(
            "Memory against the limit",
            "bytes",
            "Used memory and maxmemory (0: no limit).",
            ("max(redis_memory_used_bytes)", "used"),
            ("max(redis_memory_max_bytes)", "max"),
        ),
        graph(
            "Keyspace hit ratio",
            "percentunit",
            "Share of key lookups that found their key.",
            (
                "sum(rate(redis_keyspace_hits_total[$__rate_interval])) / "
                "(sum(rate(redis_keyspace_hits_total[$__rate_interval])) + "
                "sum(rate(redis_keyspace_misses_total[$__rate_interval])))",
                "hits",
            ),
        ),
        graph(
            "Evictions and rejections in 5 minutes",
            "short",
            "Keys evicted (none under noeviction), writes refused with OOM and connections "
            "rejected in the 5 minutes before each point, as the alerts count them (any is "
            "one too many). Alerts: RedisRejectedWrites, RedisRejectedConnections.",
            ("sum(increase(redis_evicted_keys_total[5m]))", "evicted"),
            ('sum(increase(redis_errors_total{err="OOM"}[5m])) or vector(0)', "refused writes"),
            ("sum(increase(redis_rejected_connections_total[5m]))", "rejected"),
        ),
    ]
    return dashboard(
        "assistant-redis", "Redis", "Redis as redis_exporter sees it.", "redis", panels
    )
