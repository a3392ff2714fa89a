"""OAuth integrations with simulated providers: connect, refresh, revoke, list.

* **Providers** (google, microsoft, github) are simulated: each call waits a configured
  latency and fails at configured rates -- a connect with ``access_denied``, a refresh with
  ``invalid_grant``, any call with ``provider_error`` or ``timeout``.
* **Storage**: table ``oauth_integrations`` (one *active* row per user and provider, a partial
  unique index). The simulated tokens never reach the database or a response: only their
  SHA-256 hashes are stored, and revoking clears even those.
* **Metrics** (through ``app_metrics`` only, never a user id or token in a label):
  ``oauth_operation_duration_seconds{provider, operation}`` times each provider call
  (connect, refresh, revoke), ``oauth_token_refresh_total{provider, status}`` counts refreshes,
  ``oauth_errors_total{provider, error_type}`` provider errors; ``oauth_integrations_active``
  and ``oauth_connected_users`` are read from PostgreSQL at scrape time (cached by app_metrics).
* **Settings**: ``OAuthSettings.from_env()``: ``ASSISTANT_OAUTH_<FIELD>`` sets a field for
  every provider, ``ASSISTANT_OAUTH_<PROVIDER>_<FIELD>`` for one (for example
  ``ASSISTANT_OAUTH_GOOGLE_REFRESH_FAILURE_RATE=0.2``). Fields: see ``ProviderProfile``.

``install(app, metrics, db)`` wires the service into an app; its routes are
``assistant.routes.oauth``, which the app includes with the others.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import random
import secrets
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar, TypeVar

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    distinct,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base, Database, User
from .errors import ApiError

if TYPE_CHECKING:
    from fastapi import FastAPI

    import app_metrics
    from app_metrics.domain import OAuthMetrics

log = logging.getLogger("assistant")
T = TypeVar("T")


class Provider(StrEnum):
    GOOGLE = "google"
    MICROSOFT = "microsoft"
    GITHUB = "github"


PROVIDERS: tuple[str, ...] = tuple(p.value for p in Provider)

DEFAULT_SCOPES: Mapping[str, tuple[str, ...]] = {
    "google": ("openid", "email", "https://www.googleapis.com/auth/calendar.readonly"),
    "microsoft": ("openid", "offline_access", "Calendars.Read"),
    "github": ("read:user",),
}

ACTIVE, REVOKED = "active", "revoked"


# --- settings -------------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderProfile:
    """How one simulated provider behaves."""

    latency_seconds: float = 0.1  # mean wait of a call (uniform in 0.5x..1.5x)
    timeout_seconds: float = 1.0  # how long a call that times out hangs first
    connect_failure_rate: float = 0.03  # connect -> access_denied (consent refused)
    refresh_failure_rate: float = 0.02  # refresh -> invalid_grant (refresh token dead)
    provider_error_rate: float = 0.01  # any call -> provider_error (a 5xx)
    timeout_rate: float = 0.005  # any call -> timeout
    token_ttl_seconds: float = 3600.0  # lifetime of an access token

    def __post_init__(self) -> None:
        for name, value in dataclasses.asdict(self).items():
            if name.endswith("_rate") and not 0 <= value <= 1:
                raise ValueError(f"OAuth {name} must be within 0..1, not {value}")
            if name == "latency_seconds" and not value >= 0:
                raise ValueError(f"OAuth latency_seconds must be >= 0, not {value}")
            if name in ("timeout_seconds", "token_ttl_seconds") and not value > 0:
                raise ValueError(f"OAuth {name} must be > 0, not {value}")


_DEFAULT_PROFILES: Mapping[str, ProviderProfile] = {
    "google": ProviderProfile(latency_seconds=0.12),
    "microsoft": ProviderProfile(
        latency_seconds=0.2, connect_failure_rate=0.05, refresh_failure_rate=0.04
    ),
    "github": ProviderProfile(latency_seconds=0.08, refresh_failure_rate=0.01),
}


@dataclass(frozen=True)
class OAuthSettings:
    profiles: Mapping[str, ProviderProfile] = dataclasses.field(
        default_factory=lambda: dict(_DEFAULT_PROFILES)
    )

    def __post_init__(self) -> None:
        missing = set(PROVIDERS) - set(self.profiles)
        if missing:
            raise ValueError(f"OAuth settings lack providers: {', '.join(sorted(missing))}")

    @classmethod
    def uniform(cls, **fields: float) -> OAuthSettings:
        """Every provider behaves the same (tests: ``uniform(refresh_failure_rate=1)``)."""
        return cls({p: ProviderProfile(**fields) for p in PROVIDERS})

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> OAuthSettings:
        profiles = {}
        for provider in PROVIDERS:
            values: dict[str, float] = {}
            for name in ProviderProfile.__dataclass_fields__:
                for variable in (
                    f"ASSISTANT_OAUTH_{name.upper()}",
                    f"ASSISTANT_OAUTH_{provider.upper()}_{name.upper()}",  # wins
                ):
                    if variable in env:
                        try:
                            values[name] = float(env[variable].strip())
                        except ValueError:
                            raise ValueError(
                                f"{variable}={env[variable]!r} is not a valid number"
                            ) from None
            profiles[provider] = dataclasses.replace(_DEFAULT_PROFILES[provider], **values)
        return cls(profiles)


# --- the table --------------------------------------------------------------------------


class OAuthIntegration(Base):
    __tablename__ = "oauth_integrations"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'revoked')", name="oauth_integrations_status"),
        # one active integration per user and provider; revoked ones stay as history
        Index(
            "oauth_integrations_one_active",
            "user_id",
            "provider",
            unique=True,
            postgresql_where=text("status = 'active'"),
        ),
        # the scrape-time count by provider
        Index(
            "oauth_integrations_active_provider",
            "provider",
            postgresql_where=text("status = 'active'"),
        ),
    )
    __mapper_args__: ClassVar[dict[str, object]] = {"eager_defaults": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey(User.id, ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=ACTIVE)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(200)))
    # SHA-256 of the (simulated) tokens, never the tokens; NULL once revoked
    access_token_sha256: Mapped[str | None] = mapped_column(String(64))
    refresh_token_sha256: Mapped[str | None] = mapped_column(String(64))
    access_token_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    refresh_count: Mapped[int] = mapped_column(Integer, default=0)
    connected_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    refreshed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# --- the simulated providers --------------------------------------------------------------


class ProviderFailure(Exception):
    def __init__(self, provider: str, error_type: str, message: str) -> None:
        super().__init__(message)
        self.provider = provider
        self.error_type = error_type


@dataclass(frozen=True)
class Grant:
    access_token: str
    refresh_token: str
    expires_in_seconds: float


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SimulatedProviders:
    """Provider calls with configured latency and failure rates (``settings`` may be swapped)."""

    def __init__(self, settings: OAuthSettings, rng: random.Random | None = None) -> None:
        self.settings = settings
        self._rng = rng or random.Random()

    async def _call(self, provider: str, failure_rate: float, failure: str) -> None:
        profile = self.settings.profiles[provider]
        rng = self._rng
        if rng.random() < profile.timeout_rate:
            await asyncio.sleep(profile.timeout_seconds)
            raise ProviderFailure(provider, "timeout", f"{provider} did not answer in time")
        await asyncio.sleep(profile.latency_seconds * rng.uniform(0.5, 1.5))
        if rng.random() < profile.provider_error_rate:
            raise ProviderFailure(provider, "provider_error", f"{provider} answered with an error")
        if rng.random() < failure_rate:
            messages = {
                "access_denied": f"the user did not grant access at {provider}",
                "invalid_grant": (
                    f"{provider} rejected the refresh token: reconnect the integration"
                ),
            }
            raise ProviderFailure(provider, failure, messages[failure])

    def _grant(self, provider: str) -> Grant:
        ttl = self.settings.profiles[provider].token_ttl_seconds
        return Grant(secrets.token_urlsafe(32), secrets.token_urlsafe(32), ttl)

    async def connect(self, provider: str) -> Grant:
        """Consent plus authorization-code exchange."""
        await self._call(
            provider, self.settings.profiles[provider].connect_failure_rate, "access_denied"
        )
        return self._grant(provider)

    async def refresh(self, provider: str) -> Grant:
        await self._call(
            provider, self.settings.profiles[provider].refresh_failure_rate, "invalid_grant"
        )
        return self._grant(provider)

    async def revoke(self, provider: str) -> None:
        await self._call(provider, 0.0, "provider_error")


# --- the service ------------------------------------------------------------------------


def _user_not_found(user_id: int) -> ApiError:
    return ApiError(404, "user_not_found", f"no user with id {user_id}")


def _integration_not_found(user_id: int, provider: str) -> ApiError:
    return ApiError(
        404,
        "integration_not_found",
        f"user {user_id} has no active {provider} integration",
    )


def _provider_failed(exc: ProviderFailure) -> ApiError:
    return ApiError(502, exc.error_type, f"{exc}; nothing was changed")


class OAuthService:
    def __init__(self, db: Database, metrics: OAuthMetrics, providers: SimulatedProviders) -> None:
        self.db = db
        self.metrics = metrics
        self.providers = providers

    async def _active(
        self, session: AsyncSession, user_id: int, provider: str, *, lock: bool = False
    ) -> OAuthIntegration:
        """The active integration; 404 for an unknown user or none active."""
        query = select(OAuthIntegration).where(
            OAuthIntegration.user_id == user_id,
            OAuthIntegration.provider == provider,
            OAuthIntegration.status == ACTIVE,
        )
        row = await session.scalar(query.with_for_update() if lock else query)
        if row is None:
            if await session.get(User, user_id) is None:
                raise _user_not_found(user_id)
            raise _integration_not_found(user_id, provider)
        return row

    async def _call(self, provider: str, operation: str, call: Awaitable[T]) -> T:
        """One timed provider call; a failure is counted by type and re-raised."""
        try:
            async with self.metrics.time_operation(provider, operation):
                return await call
        except ProviderFailure as exc:
            self.metrics.error(provider, exc.error_type)
            raise

    async def connect(
        self, user_id: int, provider: str, scopes: Sequence[str] | None
    ) -> OAuthIntegration:
        async with self.db.session() as session:  # checked first: no consent for nothing
            if await session.get(User, user_id) is None:
                raise _user_not_found(user_id)
            if await self._find_active_id(session, user_id, provider) is not None:
                raise _already_connected(user_id, provider)
        # no database connection is held while the provider answers
        try:
            grant = await self._call(provider, "connect", self.providers.connect(provider))
        except ProviderFailure as exc:
            raise _provider_failed(exc) from None
        integration = OAuthIntegration(
            user_id=user_id,
            provider=provider,
            status=ACTIVE,
            scopes=list(dict.fromkeys(scopes or DEFAULT_SCOPES[provider])),
            access_token_sha256=_sha256(grant.access_token),
            refresh_token_sha256=_sha256(grant.refresh_token),
            access_token_expires_at=_expiry(grant),
            refresh_count=0,
        )
        async with self.db.session() as session:
            session.add(integration)
            try:
                await session.commit()
            except IntegrityError as exc:  # a concurrent connect won, or the user is gone
                if getattr(exc.orig, "sqlstate", None) == "23503":
                    raise _user_not_found(user_id) from None
                raise _already_connected(user_id, provider) from None
        return integration

    async def _find_active_id(
        self, session: AsyncSession, user_id: int, provider: str
    ) -> int | None:
        return await session.scalar(
            select(OAuthIntegration.id).where(
                OAuthIntegration.user_id == user_id,
                OAuthIntegration.provider == provider,
                OAuthIntegration.status == ACTIVE,
            )
        )

    async def refresh(self, user_id: int, provider: str) -> OAuthIntegration:
        async with self.db.session() as session:
            integration_id = (await self._active(session, user_id, provider)).id
        try:
            grant = await self._call(provider, "refresh", self.providers.refresh(provider))
        except ProviderFailure as exc:
            self.metrics.token_refresh(provider, success=False)
            raise _provider_failed(exc) from None
        self.metrics.token_refresh(provider, success=True)
        async with self.db.session() as session:
            integration = await self._active(session, user_id, provider, lock=True)
            if integration.id != integration_id:  # revoked and reconnected meanwhile
                raise _integration_not_found(user_id, provider)
            integration.access_token_sha256 = _sha256(grant.access_token)
            integration.refresh_token_sha256 = _sha256(grant.refresh_token)
            integration.access_token_expires_at = _expiry(grant)
            integration.refresh_count += 1
            integration.refreshed_at = datetime.now(UTC)
            await session.commit()
        return integration

    async def revoke(self, user_id: int, provider: str) -> None:
        async with self.db.session() as session:
            await self._active(session, user_id, provider)
        try:
            await self._call(provider, "revoke", self.providers.revoke(provider))
        except ProviderFailure as exc:
            # the user asked to disconnect: the local tokens go whatever the provider says
            log.warning("revoking at %s failed (%s); revoked locally", provider, exc.error_type)
        async with self.db.session() as session:
            integration = await self._active(session, user_id, provider, lock=True)
            integration.status = REVOKED
            integration.revoked_at = datetime.now(UTC)
            integration.access_token_sha256 = integration.refresh_token_sha256 = None
            integration.access_token_expires_at = None
            await session.commit()

    async def list(self, user_id: int) -> list[OAuthIntegration]:
        async with self.db.session() as session:
            if await session.get(User, user_id) is None:
                raise _user_not_found(user_id)
            rows = await session.scalars(
                select(OAuthIntegration)
                .where(OAuthIntegration.user_id == user_id)
                .order_by(OAuthIntegration.id)
            )
            return list(rows)

    async def due_for_refresh(
        self, limit: int, user_id: int | None = None
    ) -> list[tuple[int, str]]:
        """Active integrations whose access tokens expire soonest: (user, provider) pairs."""
        query = select(OAuthIntegration.user_id, OAuthIntegration.provider).where(
            OAuthIntegration.status == ACTIVE
        )
        if user_id is not None:
            query = query.where(OAuthIntegration.user_id == user_id)
        query = query.order_by(OAuthIntegration.access_token_expires_at).limit(limit)
        async with self.db.session() as session:
            return [(int(uid), str(provider)) for uid, provider in await session.execute(query)]

    # scrape time (app_metrics caches the values for source_ttl)
    async def count_active_by_provider(self) -> dict[str, int]:
        async with self.db.session() as session:
            rows = await session.execute(
                select(OAuthIntegration.provider, func.count())
                .where(OAuthIntegration.status == ACTIVE)
                .group_by(OAuthIntegration.provider)
            )
            return {provider: int(n) for provider, n in rows}

    async def count_connected_users(self) -> int:
        async with self.db.session() as session:
            query = select(func.count(distinct(OAuthIntegration.user_id))).where(
                OAuthIntegration.status == ACTIVE
            )
            return int(await session.scalar(query) or 0)


def _already_connected(user_id: int, provider: str) -> ApiError:
    return ApiError(
        409,
        "integration_exists",
        f"user {user_id} already has an active {provider} integration: revoke it first",
    )


def _expiry(grant: Grant) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=grant.expires_in_seconds)


def install(
    app: FastAPI,
    metrics: app_metrics.Metrics,
    db: Database,
    settings: OAuthSettings | None = None,
    *,
    api: bool = True,
) -> OAuthService:
    """The service (``app.state.oauth``, where its routes find it); with ``api``, also the
    scrape-time gauges. Pass ``oauth_providers=oauth.PROVIDERS`` to ``app_metrics.instrument``
    as well."""
    service = OAuthService(
        db, metrics.oauth, SimulatedProviders(settings or OAuthSettings.from_env())
    )
    app.state.oauth = service
    if api:
        metrics.oauth.active_integrations_from(service.count_active_by_provider)
        metrics.oauth.connected_users_from(service.count_connected_users)
    return service
