"""Background jobs: enqueued in Redis (one reliable queue per configured queue name), run by
the worker loops with a per-job timeout.

Kinds:

* ``send_reminder`` (``user_id``): queues a reminder SMS to the user's phone; fails for an
  unknown user or one without a phone (real errors);
* ``refresh_tokens`` (``user_id`` optional): refreshes, through the OAuth service, the
  active integrations whose tokens expire soonest (at most ``REFRESH_BATCH``); fails when
  any refresh fails;
* ``cleanup_sessions``: real work, prunes expired entries of the session expiry index.

Each kind first waits its configured ``latency`` and fails with probability ``failure``
(``ASSISTANT_TASK_PROFILES``). The outcome, ``success``, ``failure`` or ``timeout``
(``ASSISTANT_TASK_TIMEOUT_SECONDS``), is recorded in ``task_executions_total`` and
``task_execution_duration_seconds`` and in the job's record ``assistant:task:<id>``, once:
only the run that settles the record (``Records.settle``) counts. A job taken more than
``queue_max_deliveries`` times fails with ``retries_exhausted``: counted in
``task_executions_total`` without a duration (it did not run), and in
``task_dead_letters_total`` (given up, like an entry the loop cannot parse).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any

import redis.asyncio as aioredis

import app_metrics

from .config import Profile
from .db import Database, User
from .oauth import OAuthService
from .queue import BadEntry, Records, ReliableQueue, age_of, parse_entry, stamped
from .redis_client import PREFIX, redis_available
from .sessions import EXPIRY_INDEX
from .sms import SmsService

log = logging.getLogger("assistant")

TASK_KINDS = ("send_reminder", "refresh_tokens", "cleanup_sessions")
DEFAULT_QUEUE = {"cleanup_sessions": 1}  # index into the queues: maintenance, if configured
RECORD_KEY = PREFIX + "task:"
RECORD_TTL_SECONDS = 7 * 24 * 3600
FINAL = ("success", "failure", "timeout")


REFRESH_BATCH = 10  # integrations one refresh_tokens job refreshes at most


class TaskError(Exception):
    pass


class TaskService:
    def __init__(
        self,
        redis: aioredis.Redis,
        db: Database,
        sms: SmsService,
        metrics: app_metrics.Metrics,
        *,
        queues: tuple[str, ...],
        profiles: dict[str, Profile],
        timeout: float,
        max_deliveries: int,
    ) -> None:
        unknown = set(profiles) - set(TASK_KINDS)
        if unknown:
            raise ValueError(f"ASSISTANT_TASK_PROFILES: unknown task kinds {sorted(unknown)}")
        self.redis = redis
        self.db = db
        self.sms = sms
        self.metrics = metrics
        self.queues = {name: ReliableQueue(redis, "tasks:" + name) for name in queues}
        self.records = Records(redis)
        self.profiles = profiles
        self.timeout = timeout
        self.max_deliveries = max_deliveries
        self.oauth: OAuthService | None = None  # set once OAuth is installed (refresh_tokens)
        self._kinds: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            "send_reminder": self._send_reminder,
            "refresh_tokens": self._refresh_tokens,
            "cleanup_sessions": self._cleanup_sessions,
        }

    def default_queue(self, kind: str) -> str:
        names = list(self.queues)
        return names[min(DEFAULT_QUEUE.get(kind, 0), len(names) - 1)]

    async def enqueue(self, kind: str, queue: str, params: dict[str, Any]) -> str:
        task_id = uuid.uuid4().hex
        entry = stamped({"id": task_id, "type": kind, "queue": queue, "params": params})
        record = {"status": "queued", "type": kind, "queue": queue, "enqueued_at": time.time()}
        with redis_available():
            await self.queues[queue].put(entry, RECORD_KEY + task_id, record, RECORD_TTL_SECONDS)
        return task_id

    async def status(self, task_id: str) -> dict[str, str] | None:
        with redis_available():
            record = await self.redis.hgetall(RECORD_KEY + task_id)
        return record or None

    async def queue_lengths(self) -> dict[str, int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for queue in self.queues.values():
                pipe.llen(queue.key)
            lengths = await pipe.execute()
        return dict(zip(self.queues, map(int, lengths), strict=True))

    async def queue_ages(self) -> dict[str, float]:
        """Per queue, seconds the task taken next has waited (0 when none waits)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for queue in self.queues.values():
                pipe.lindex(queue.key, -1)
            heads = await pipe.execute()
        now = time.time()
        return {name: age_of(head, now) for name, head in zip(self.queues, heads, strict=True)}

    async def run(self, entry: str) -> None:
        """The worker's handler for one queue entry."""
        job = parse_entry(entry, id=str, type=str, params=dict)
        kind = job["type"]
        if kind not in self._kinds:
            raise BadEntry(f"unknown task type {kind!r}")
        key = RECORD_KEY + job["id"]
        taken = await self.records.taken(key)
        if taken is None:
            log.warning("task %s: its record expired; dropped, outcome unknown", job["id"])
            return
        deliveries, (status,) = taken
        if status in FINAL:
            return
        if deliveries > self.max_deliveries:
            if await self._settle(key, "failure", error="retries_exhausted"):
                self.metrics.tasks.executions.labels(kind, "failure").inc()
                self.metrics.tasks.dead_letter(str(job.get("queue", "")), "retries_exhausted")
            return
        start = perf_counter()
        result: dict[str, Any] = {}
        error = ""
        try:
            async with asyncio.timeout(self.timeout):
                result = await self._simulate_then(kind, job["params"])
            outcome = "success"
        except TimeoutError:
            outcome, error = "timeout", f"took longer than {self.timeout} s"
        except Exception as exc:
            outcome, error = "failure", f"{type(exc).__name__}: {exc}"
        seconds = perf_counter() - start
        if await self._settle(key, outcome, error=error, result=result, seconds=seconds):
            self.metrics.tasks.executed(kind, outcome, seconds)  # type: ignore[arg-type]

    async def _simulate_then(self, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        profile = self.profiles.get(kind, Profile(kind))
        if profile.latency:
            await asyncio.sleep(profile.latency)
        if random.random() < profile.failure:
            raise TaskError(f"{kind} failed (simulated)")
        return await self._kinds[kind](params)

    async def _settle(
        self,
        key: str,
        outcome: str,
        *,
        error: str = "",
        result: dict[str, Any] | None = None,
        seconds: float | None = None,
    ) -> bool:
        """Record the outcome unless already recorded: True when this call recorded it."""
        fields: dict[str, Any] = {
            "status": outcome,
            "error": error,
            "result": json.dumps(result or {}),
            "finished_at": time.time(),
        }
        if seconds is not None:
            fields["duration_seconds"] = seconds
        return await self.records.settle(key, fields)

    async def _send_reminder(self, params: dict[str, Any]) -> dict[str, Any]:
        user_id = params.get("user_id")
        if not isinstance(user_id, int):
            raise TaskError("send_reminder needs an integer user_id")
        async with self.db.session() as session:
            user = await session.get(User, user_id)
        if user is None:
            raise TaskError(f"no user with id {user_id}")
        if user.phone is None:
            raise TaskError(f"user {user_id} has no phone number")
        sms_id = await self.sms.enqueue(user.phone, "Reminder from your assistant", user_id)
        return {"sms_id": sms_id}

    async def _refresh_tokens(self, params: dict[str, Any]) -> dict[str, Any]:
        """Refresh the integrations expiring soonest (the user's, with ``user_id``), through
        the OAuth service, so each refresh is counted there too; any failure fails the job."""
        if self.oauth is None:
            raise TaskError("the OAuth service is not installed")
        due = await self.oauth.due_for_refresh(REFRESH_BATCH, params.get("user_id"))
        failed = []
        for user_id, provider in due:
            try:
                await self.oauth.refresh(user_id, provider)
            except Exception as exc:  # a provider failure (502) or a revoke meanwhile (404)
                failed.append(f"{provider}: {getattr(exc, 'error', type(exc).__name__)}")
        if failed:
            raise TaskError(f"{len(failed)} of {len(due)} refreshes failed ({', '.join(failed)})")
        return {"refreshed": len(due)}

    async def _cleanup_sessions(self, params: dict[str, Any]) -> dict[str, Any]:
        removed = await self.redis.zremrangebyscore(EXPIRY_INDEX, "-inf", time.time())
        return {"removed": int(removed)}
