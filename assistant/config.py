"""Settings from ``ASSISTANT_*`` environment variables, with defaults that work on 127.0.0.1."""

from __future__ import annotations

import logging
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

log = logging.getLogger("assistant")

T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    # URLs may carry passwords: kept out of repr(), like the tokens
    database_url: str = field(
        default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres", repr=False
    )
    redis_url: str = field(default="redis://127.0.0.1:6379/0", repr=False)
    # Bearer token of the trusted client (the assistant's front end) for every API route.
    api_token: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    # Bearer token for /metrics (None: open); app_metrics reads the file itself.
    metrics_token: str | None = field(default=None, repr=False)
    metrics_token_file: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    # app_metrics' metrics listener: /metrics also on ASSISTANT_HOST:<this port>, from threads
    # of its own, answered while the event loop is saturated or blocked (None: off)
    metrics_port: int | None = None
    # which stack this runs in (dev, stage, prod): stage and prod refuse what is for tests
    environment: str = "dev"
    # POST /debug/block?seconds=N: a sync sleep in an async route, which blocks the event loop
    # for up to 10 s (the integration suite's blocked loop); dev only, needs the API token
    debug_routes: bool = False
    # Host header values answered, comma-separated (a port is ignored): anything else gets
    # 400, so a DNS-rebound name cannot reach the API from a browser. Compose adds its
    # service names (api, worker: how Prometheus and the traffic generator reach it).
    allowed_hosts: str = "localhost,127.0.0.1"
    # and this machine's own IPv4 addresses (addresses.py): a replica Prometheus scrapes by
    # the address DNS discovery gives it (Compose sets it; an IP is no DNS-rebound name)
    allow_own_addresses: bool = False
    api_docs: bool = False  # /docs, /redoc and /openapi.json (the dev stack turns them on)
    # a span per request (tracing.py; needs opentelemetry-sdk), its trace id app_metrics'
    # exemplar on the request duration; the dev stack turns it on
    tracing: bool = False
    # Requests (gate.py): a body is read only for a caller with the API token, up to
    # max_body_bytes (413 beyond, unread), within body_timeout_seconds (408). The server
    # (server.py, python -m assistant): a request head within header_timeout_seconds and
    # max_header_bytes, max_connections at once (503 beyond), idle keep-alive connections
    # closed after keep_alive_seconds.
    max_body_bytes: int = 64 * 1024
    body_timeout_seconds: float = 10.0
    header_timeout_seconds: float = 10.0
    max_header_bytes: int = 8 * 1024
    max_connections: int = 200
    keep_alive_seconds: float = 5.0
    # all: API routes and the delivery loops in one process; api: routes only; worker: the
    # loops, serving only /metrics and /health (Compose runs one api and one worker)
    role: str = "all"
    session_ttl_seconds: float = 3600.0
    verification_code_ttl_seconds: float = 300.0
    # Phone verification limits, fixed windows in Redis (verification.py); past one, 429 with
    # Retry-After. Wrong answers per user, over every code of the window (a new code brings
    # no new attempts; used up, answers and new codes wait for the window's end):
    verification_max_attempts: int = 5
    verification_attempt_window_seconds: float = 3600.0
    # codes sent per phone number (SMS bombing), per user (one account pumping SMS to many
    # numbers) and per API client (what the front end may cost in SMS, whatever the spread)
    verification_phone_limit: int = 3
    verification_phone_window_seconds: float = 3600.0
    verification_user_limit: int = 5
    verification_user_window_seconds: float = 3600.0
    verification_client_limit: int = 2000
    verification_client_window_seconds: float = 3600.0
    # pool_size steady connections plus max_overflow burst ones; pool_timeout bounds the
    # wait for a free one, connect_timeout a connect to a dead host.
    db_pool_size: int = 5
    db_max_overflow: int = 5
    db_pool_timeout_seconds: float = 5.0
    db_connect_timeout_seconds: float = 2.0
    db_statement_timeout_seconds: float = 5.0
    redis_timeout_seconds: float = 1.0
    health_timeout_seconds: float = 2.0
    # each health check runs at most once per interval, whatever the request rate; the
    # /health endpoints and the scrapes share its result
    health_interval_seconds: float = 2.0
    # app_metrics: how long a scrape-time reader may take, and how long its value is reused
    metrics_source_timeout_seconds: float = 2.0
    metrics_source_ttl_seconds: float = 5.0
    # SMS providers, tried in this order (failover): "name:key=value,...;name:..." with
    # latency (seconds), failure (probability 0..1) and cost (per delivered message).
    sms_providers: str = (
        "twilio:latency=0.05,failure=0.02,cost=0.0079;vonage:latency=0.08,failure=0.03,cost=0.0068"
    )
    # Background task kinds, the same format: simulated latency and failure probability,
    # on top of the real work a kind does.
    task_profiles: str = (
        "send_reminder:latency=0.02,failure=0;refresh_tokens:latency=0.1,failure=0.05;"
        "cleanup_sessions:latency=0,failure=0"
    )
    # dev only: keep each delivered SMS in the simulated providers' outbox (outbox.py), which
    # the traffic generator reads to answer verification codes
    sms_outbox: bool = False
    task_queues: str = "default,maintenance"  # comma-separated; the first is the default
    task_timeout_seconds: float = 10.0
    # the reliable queues (queue.py): how long a consumer blocks waiting, when a consumer
    # without a heartbeat is dead (its unacknowledged entries go back to the queue), and
    # how often one entry may be taken before it is recorded as failed
    queue_block_seconds: float = 0.5
    queue_dead_consumer_seconds: float = 30.0
    queue_max_deliveries: int = 3
    worker_stop_timeout_seconds: float = 5.0

    def __post_init__(self) -> None:
        not_positive = [
            name
            for name, value in vars(self).items()
            if name.endswith(
                ("_seconds", "_attempts", "_limit", "_pool_size", "_bytes", "_connections")
            )
            and name != "metrics_source_ttl_seconds"  # 0: read at every scrape
            and not value > 0
        ]
        if not_positive:
            raise ValueError(f"settings must be > 0: {', '.join(not_positive)}")
        if self.metrics_source_ttl_seconds < 0 or self.db_max_overflow < 0:
            raise ValueError("metrics_source_ttl_seconds and db_max_overflow must be >= 0")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is not within 0..65535")
        if self.metrics_port is not None and not 1 <= self.metrics_port <= 65535:
            raise ValueError(f"metrics_port {self.metrics_port} is not within 1..65535")
        if self.metrics_port is not None and self.metrics_port == self.port:
            raise ValueError(f"metrics_port and port are both {self.port}: give each its own")
        if self.environment not in ENVIRONMENTS:
            raise ValueError(
                f"environment {self.environment!r} is not one of {', '.join(ENVIRONMENTS)}"
            )
        if self.debug_routes and self.environment != "dev":
            raise ValueError(
                f"ASSISTANT_DEBUG_ROUTES is refused in {self.environment}: /debug/block lets a "
                "caller stall the service's event loop on purpose (dev only)"
            )
        if self.role not in ROLES:
            raise ValueError(f"role {self.role!r} is not one of {', '.join(ROLES)}")
        if not self.api_token.strip():
            raise ValueError("api_token must not be empty")
        if self.queue_max_deliveries < 1:
            raise ValueError("queue_max_deliveries must be >= 1")
        if not self.sms_provider_profiles:
            raise ValueError("sms_providers names no provider")
        # a handler runs within 2/3 of queue_dead_consumer_seconds (worker.py): the longest
        # work (a job's timeout; an SMS trying every provider at 1.5 × its latency) plus
        # queue_block_seconds for the Redis calls around it must fit
        sms_worst = sum(1.5 * p.latency for p in self.sms_provider_profiles)
        work = max(self.task_timeout_seconds, sms_worst) + self.queue_block_seconds
        if work >= self.queue_dead_consumer_seconds * 2 / 3:
            raise ValueError(
                f"queue_dead_consumer_seconds must exceed 1.5 × {work:g} s: task_timeout_seconds"
                " or 1.5 × the SMS providers' summed latency, plus queue_block_seconds"
            )
        if not self.task_queue_names:
            raise ValueError("task_queues names no queue")
        if not self.allowed_host_names:
            raise ValueError("allowed_hosts names no host")
        self.task_profile_map  # noqa: B018 (validates the format)

    @property
    def serves_api(self) -> bool:
        return self.role in ("all", "api")

    @property
    def runs_worker(self) -> bool:
        return self.role in ("all", "worker")

    @property
    def sms_provider_profiles(self) -> tuple[Profile, ...]:
        return parse_profiles("ASSISTANT_SMS_PROVIDERS", self.sms_providers, _SMS_KEYS)

    @property
    def task_profile_map(self) -> dict[str, Profile]:
        profiles = parse_profiles("ASSISTANT_TASK_PROFILES", self.task_profiles, _TASK_KEYS)
        return {profile.name: profile for profile in profiles}

    @property
    def allowed_host_names(self) -> tuple[str, ...]:
        return tuple(name.strip() for name in self.allowed_hosts.split(",") if name.strip())

    @property
    def task_queue_names(self) -> tuple[str, ...]:
        return tuple(name.strip() for name in self.task_queues.split(",") if name.strip())

    @property
    def db_pool_capacity(self) -> int:
        return self.db_pool_size + self.db_max_overflow

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] = os.environ, *, generate_token: bool = False
    ) -> Settings:
        """Each field from ``ASSISTANT_<FIELD NAME>`` (``ASSISTANT_DATABASE_URL``,
        ``ASSISTANT_SESSION_TTL_SECONDS``, ...); unset ones keep their defaults. The URLs
        (they carry passwords) may instead come from the files ``ASSISTANT_DATABASE_URL_FILE``
        and ``ASSISTANT_REDIS_URL_FILE``, mounted secrets.

        The API token may also come from the file ``ASSISTANT_API_TOKEN_FILE``. Without
        either, ``generate_token`` (``python -m assistant``, one process) makes a random
        one and writes it to a private file, never to the log; otherwise (a factory run
        with several workers, which would each make their own) it is an error.
        """
        values: dict[str, object] = {}
        for name, spec in cls.__dataclass_fields__.items():
            variable = f"ASSISTANT_{name.upper()}"
            if name in _FROM_FILE:
                secret = _secret(env, variable)
                if secret is not None:
                    values[name] = secret
            elif variable in env and name != "api_token":
                values[name] = _parse(variable, env[variable], _TYPES[str(spec.type)])
        api_token = _secret(env, "ASSISTANT_API_TOKEN")
        if api_token is None:
            if not generate_token:
                raise ValueError(
                    "ASSISTANT_API_TOKEN or ASSISTANT_API_TOKEN_FILE must be set: every worker "
                    "of the service needs the same token"
                )
            api_token = secrets.token_urlsafe(32)
            path = _write_private(api_token)
            log.warning("ASSISTANT_API_TOKEN is not set; this run's token is in %s", path)
        return cls(**values, api_token=api_token)  # type: ignore[arg-type]


def _write_private(token: str) -> Path:
    """Write a generated token to a new file only this user can read; return its path.

    The name is random and the file is created exclusively, never through a symbolic link
    (``mkstemp``: ``O_CREAT | O_EXCL | O_NOFOLLOW``, mode 0600), so nobody can plant a file
    or a link at a name known in advance and read or redirect the token.
    """
    directory = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    descriptor, name = tempfile.mkstemp(prefix="assistant-api-token.", dir=directory)
    with os.fdopen(descriptor, "w") as f:
        f.write(token + "\n")
    return Path(name)


@dataclass(frozen=True)
class Profile:
    """One simulated SMS provider or task kind."""

    name: str
    latency: float = 0.0  # seconds per call
    failure: float = 0.0  # probability 0..1 that a call fails
    cost: float = 0.0  # per delivered message (SMS only)


ROLES = ("all", "api", "worker")
ENVIRONMENTS = ("dev", "stage", "prod")  # the stack's (stack/__init__.py)
_FROM_FILE = ("database_url", "redis_url")  # or ASSISTANT_<NAME>_FILE
_SMS_KEYS = ("latency", "failure", "cost")
_TASK_KEYS = ("latency", "failure")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


def parse_profiles(variable: str, raw: str, keys: tuple[str, ...]) -> tuple[Profile, ...]:
    """``"twilio:latency=0.05,failure=0.02,cost=0.0079;vonage:..."`` as profiles, in order."""
    profiles: list[Profile] = []
    for entry in filter(None, (part.strip() for part in raw.split(";"))):
        name, _, options = (text.strip() for text in entry.partition(":"))
        if not _NAME.fullmatch(name) or name in {p.name for p in profiles}:
            raise ValueError(f"{variable}: {name!r} is not a valid (or is a repeated) name")
        values: dict[str, float] = {}
        for option in filter(None, (part.strip() for part in options.split(","))):
            key, _, number = (text.strip() for text in option.partition("="))
            if key not in keys:
                raise ValueError(f"{variable}: unknown key {key!r} for {name} (use {keys})")
            values[key] = _parse(f"{variable} {name}.{key}", number, float)
            if not values[key] >= 0 or (key == "failure" and values[key] > 1):
                raise ValueError(f"{variable}: {name}.{key}={number} is out of range")
        profiles.append(Profile(name, **values))
    return tuple(profiles)


def boolean(raw: str) -> bool:
    """``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off``, any case."""
    value = raw.strip().lower()
    if value not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ValueError(raw)
    return value in ("1", "true", "yes", "on")


_TYPES: dict[str, Callable[[str], object]] = {
    "str": str,
    "str | None": str,
    "int": int,
    "int | None": int,
    "float": float,
    "bool": boolean,
}


def _parse(name: str, raw: str, convert: Callable[[str], T]) -> T:
    try:
        return convert(raw.strip())
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a valid {convert.__name__}") from None


def _secret(env: Mapping[str, str], name: str) -> str | None:
    """``name`` or the contents of the file ``name_FILE`` (surrounding white space dropped)."""
    path = env.get(f"{name}_FILE")
    if path is not None and name in env:
        raise ValueError(f"set {name} or {name}_FILE, not both")
    value = Path(path).read_text() if path is not None else env.get(name)
    if value is not None and not value.strip():
        raise ValueError(f"{name} is empty")
    return value.strip() if value is not None else None
