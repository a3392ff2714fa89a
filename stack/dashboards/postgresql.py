"""PostgreSQL: the database as postgres_exporter and the service's own pool see it."""

from __future__ import annotations

from typing import Any

from .shared import dashboard, graph, scrape_interval, stat

PATH = "infrastructure/postgresql.json"
# postgres_exporter is scraped more slowly than the global interval (its own scrape_interval,
# 5 s, against 1 s in dev): its panels' queries take that as their min step, so Grafana's
# $__rate_interval spans at least four of its scrapes in every environment.
STEP = scrape_interval("postgres")


def build() -> dict[str, Any]:
    panels = [
        stat(
            "Up",
            "min(pg_up)",
            "bool",
            "1 while postgres_exporter reaches PostgreSQL. Alert: PostgresDown.",
            step=STEP,
        ),
        stat(
            "Connections used",
            "sum(pg_stat_activity_count) / max(pg_settings_max_connections)",
            "percentunit",
            "Share of max_connections in use. The app's pools fill first: DatabasePoolSaturated.",
            step=STEP,
        ),
        stat(
            "Oldest transaction",
            "max(long_transactions_oldest_seconds)",
            "s",
            "Age of the oldest open transaction (custom query). Alert: PostgresLongTransaction "
            "above 5 minutes.",
            step=STEP,
        ),
        stat(
            "Database size",
            'max(pg_database_size_bytes{datname="assistant"})',
            "bytes",
            "Size of the service's database on disk.",
            step=STEP,
        ),
        graph(
            "Connections by state",
            "short",
            "Sessions per state (active, idle, idle in transaction, ...).",
            ("sum by (state) (pg_stat_activity_count)", "{{state}}"),
            step=STEP,
        ),
        graph(
            "Transactions",
            "ops",
            "Commits and rollbacks per second in the service's database.",
            (
                'sum(rate(pg_stat_database_xact_commit{datname="assistant"}[$__rate_interval]))',
                "commit",
            ),
            (
                'sum(rate(pg_stat_database_xact_rollback{datname="assistant"}[$__rate_interval]))',
                "rollback",
            ),
            step=STEP,
        ),
        graph(
            "Deadlocks in 30 minutes",
            "short",
            "Deadlocks per database in the 30 minutes before each point, as the alert counts "
            "them (the dashed line: its threshold). Alert: PostgresDeadlocks above 5.",
            (
                "sum by (datname) (increase(pg_stat_database_deadlocks[30m]))",
                "{{datname}}",
            ),
            step=STEP,
            lines=(5,),
        ),
        graph(
            "Table rows",
            "short",
            "Live and dead rows of the service's tables (custom query); dead rows wait for vacuum.",
            ("sum by (table) (assistant_tables_live_rows)", "{{table}} live"),
            ("sum by (table) (assistant_tables_dead_rows)", "{{table}} dead"),
            step=STEP,
        ),
        graph(
            "Service's pool",
            "percentunit",
            "Checked-out share of the service's SQLAlchemy pool, per process (each replica).",
            ("database_connection_pool_utilization", "{{component}} {{instance}}"),
        ),
        graph(
            "Service's database check",
            "s",
            "Time of the service's own database check (SELECT 1 through its pool), per "
            "process (each replica).",
            ("database_response_time_seconds", "{{component}} {{instance}}"),
        ),
    ]
    return dashboard(
        "assistant-postgresql",
        "PostgreSQL",
        "PostgreSQL as postgres_exporter and the service see it.",
        "postgresql",
        panels,
    )
