"""PostgreSQL through SQLAlchemy's async engine: the users table, a real pool, fast failures.

A dead database must fail a request in milliseconds, not hang it: asyncpg's connect
timeout bounds a connect, ``command_timeout`` a statement, ``pool_timeout`` the wait for a
free connection, and ``pool_pre_ping`` replaces connections that died with a restart, so
the service recovers on its own when PostgreSQL comes back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import ClassVar

import sqlalchemy.exc
from sqlalchemy import Boolean, DateTime, String, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app_metrics import PoolStats

from .config import Settings
from .errors import DependencyUnavailable

log = logging.getLogger("assistant")

# SQLSTATEs that mean "no usable server" rather than a bad query: connection exceptions
# (08), operator intervention such as shutdown or "starting up" (57P), too many connections.
_UNAVAILABLE_SQLSTATES = ("08", "57P", "53300")
_SCHEMA_LOCK = 0x61737369  # pg_advisory_xact_lock key: one schema creator at a time


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    __mapper_args__: ClassVar[dict[str, object]] = {
        "eager_defaults": True
    }  # INSERT ... RETURNING created_at

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(32))
    phone_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` says the database cannot be reached, not that a query was wrong."""
    if isinstance(exc, OSError | TimeoutError | sqlalchemy.exc.TimeoutError):
        return True  # refused or unreachable, a timeout, or no free pool connection
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        sqlstate = getattr(exc.orig, "sqlstate", None) or ""
        return (
            exc.connection_invalidated
            or isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError)
            or sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
        )
    return False


class Database:
    """The engine, its sessions, the schema and the numbers the health checks report."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = create_async_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout=settings.db_pool_timeout_seconds,
            pool_pre_ping=True,
            pool_recycle=1800,
            connect_args={
                "timeout": settings.db_connect_timeout_seconds,
                "command_timeout": settings.db_statement_timeout_seconds,
                "server_settings": {"application_name": "assistant"},
            },
        )
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._schema_ready = False
        self._schema_lock = asyncio.Lock()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session; a database that cannot be reached raises ``DependencyUnavailable``."""
        try:
            await self.ensure_schema()
            async with self._sessions() as session:
                yield session
        except Exception as exc:
            if is_unavailable(exc):
                raise DependencyUnavailable("database", exc) from exc
            raise

    async def ensure_schema(self) -> None:
        """Create the tables once; retried on the next use while the database is down."""
        if self._schema_ready:
            return
        async with self._schema_lock:
            if self._schema_ready:
                return
            async with self.engine.begin() as conn:
                # several workers may start at once: CREATE TABLE IF NOT EXISTS still races
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK}
                )
                await conn.run_sync(Base.metadata.create_all)
            self._schema_ready = True
            log.info("database schema ready")

    async def ping(self) -> None:
        """The health check: a real ``SELECT 1`` through the pool (its caller bounds it)."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def count_users(self) -> int:
        async with self.session() as session:
            return int(await session.scalar(select(func.count()).select_from(User)) or 0)

    def pool_stats(self) -> PoolStats:
        """Capacity (pool size plus overflow) and connections checked out right now."""
        return PoolStats(self.settings.db_pool_capacity, self.engine.pool.checkedout())  # type: ignore[attr-defined]

    def pool_details(self) -> dict[str, int]:
        pool = self.engine.pool
        return {
            "pool_size": self.settings.db_pool_size,
            "max_overflow": self.settings.db_max_overflow,
            "capacity": self.settings.db_pool_capacity,
            "checked_out": pool.checkedout(),  # type: ignore[attr-defined]
            "idle": pool.checkedin(),  # type: ignore[attr-defined]
        }

    async def dispose(self) -> None:
        await self.engine.dispose()
