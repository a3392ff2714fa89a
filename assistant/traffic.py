"""``python -m assistant.traffic``: a realistic, bounded mix of requests against the API.

    python -m assistant.traffic --rate 20 --duration 60 [--url http://127.0.0.1:8000]

Every route is exercised, including 4xx on purpose (duplicate e-mails, invalid payloads,
unknown users, wrong codes, bad tokens); 5xx and failed deliveries come from the simulated
providers' failure rates. Bounded in rate, request count and time; a progress line every few
seconds and a summary per action at the end. With ``--redis-url`` or ``--redis-url-file``
(dev only) it reads its codes in the simulated SMS outbox (``outbox.py``) so that some
verifications succeed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis.asyncio as aioredis

from . import outbox

Action = Callable[["Traffic"], Awaitable[httpx.Response | None]]


@dataclass
class Traffic:
    client: httpx.AsyncClient
    token: str
    rng: random.Random
    redis: aioredis.Redis | None = None  # to read the simulated SMS outbox (dev only)
    users: list[int] = field(default_factory=list)
    phones: dict[int, str] = field(default_factory=dict)  # user id -> phone
    sessions: list[str] = field(default_factory=list)
    integrations: set[tuple[int, str]] = field(default_factory=set)  # (user, provider)

    @property
    def api(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def user(self) -> int | None:
        return self.rng.choice(self.users) if self.users else None


# --- actions: each sends one request (or none when it has nothing to act on) ----------------


async def register(t: Traffic) -> httpx.Response:
    n = t.rng.randrange(10**9)
    body = {"email": f"user{n}@example.test", "name": f"User {n}", "phone": f"+1555{n % 10**7:07d}"}
    response = await t.client.post("/users", headers=t.api, json=body)
    if response.status_code == 201:
        t.users.append(response.json()["id"])
        t.phones[response.json()["id"]] = body["phone"]
    return response


async def register_duplicate(t: Traffic) -> httpx.Response | None:
    uid = t.user()
    if uid is None:
        return None
    found = await t.client.get(f"/users/{uid}", headers=t.api)
    if found.status_code != 200:
        return found  # an outage: count what the API said
    body = {"email": found.json()["email"], "name": "Again"}
    return await t.client.post("/users", headers=t.api, json=body)  # 409


async def register_invalid(t: Traffic) -> httpx.Response:
    body = t.rng.choice([{"email": "not-an-address", "name": "X"}, {"name": ""}, {}])
    return await t.client.post("/users", headers=t.api, json=body)  # 422


async def read_user(t: Traffic) -> httpx.Response | None:
    uid = t.user()
    return None if uid is None else await t.client.get(f"/users/{uid}", headers=t.api)


async def read_unknown_user(t: Traffic) -> httpx.Response:
    return await t.client.get(f"/users/{10**8 + t.rng.randrange(10**6)}", headers=t.api)  # 404


async def bad_token(t: Traffic) -> httpx.Response:
    headers = {"Authorization": "Bearer wrong"}
    return await t.client.get(f"/users/{t.user() or 1}", headers=headers)  # 401


async def login(t: Traffic) -> httpx.Response | None:
    uid = t.user()
    if uid is None:
        return None
    found = await t.client.get(f"/users/{uid}", headers=t.api)
    if found.status_code != 200:
        return found
    email = found.json()["email"]
    response = await t.client.post("/sessions", headers=t.api, json={"email": email})
    if response.status_code == 201:
        t.sessions.append(response.json()["token"])
    return response


async def me(t: Traffic) -> httpx.Response | None:
    if not t.sessions:
        return None
    token = t.rng.choice(t.sessions)
    return await t.client.get("/users/me", headers={"Authorization": f"Bearer {token}"})


async def logout(t: Traffic) -> httpx.Response | None:
    if not t.sessions:
        return None
    token = t.sessions.pop(t.rng.randrange(len(t.sessions)))
    return await t.client.delete("/sessions/current", headers={"Authorization": f"Bearer {token}"})


async def verify_phone(t: Traffic) -> httpx.Response | None:
    uid = t.user()
    if uid is None:
        return None
    # 70 % answer with the code their phone got: the simulated SMS outbox (dev only)
    inbox = t.redis if t.redis is not None and t.rng.random() < 0.7 else None
    before = await outbox.newest(inbox, t.phones[uid]) if inbox is not None else None
    sent = await t.client.post(f"/users/{uid}/phone/verification", headers=t.api, json={})
    if sent.status_code != 202:
        return sent
    code = await outbox.code_after(inbox, t.phones[uid], before) if inbox is not None else None
    answer = {"code": code or f"{t.rng.randrange(10**6):06d}"}  # a wrong guess: "failed"
    url = f"/users/{uid}/phone/verification/confirm"
    return await t.client.post(url, headers=t.api, json=answer)


PROVIDERS = ("google", "microsoft", "github")


async def oauth_connect(t: Traffic) -> httpx.Response | None:
    uid = t.user()
    if uid is None:
        return None
    provider = t.rng.choice(PROVIDERS)  # 201, 409 when connected already, 502 when refused
    response = await t.client.post(
        f"/users/{uid}/integrations", headers=t.api, json={"provider": provider}
    )
    if response.status_code == 201:
        t.integrations.add((uid, provider))
    return response


def _integration(t: Traffic) -> tuple[int, str] | None:
    """Mostly a connected one; sometimes one that is not (a 404)."""
    if t.integrations and t.rng.random() < 0.9:
        return t.rng.choice(sorted(t.integrations))
    uid = t.user()
    return None if uid is None else (uid, t.rng.choice(PROVIDERS))


async def oauth_refresh(t: Traffic) -> httpx.Response | None:
    pair = _integration(t)
    if pair is None:
        return None
    url = f"/users/{pair[0]}/integrations/{pair[1]}/refresh"
    return await t.client.post(url, headers=t.api)  # 200, 404, or 502 from the provider


async def oauth_revoke(t: Traffic) -> httpx.Response | None:
    pair = _integration(t)
    if pair is None:
        return None
    t.integrations.discard(pair)
    return await t.client.delete(f"/users/{pair[0]}/integrations/{pair[1]}", headers=t.api)


async def send_sms(t: Traffic) -> httpx.Response | None:
    uid = t.user()
    if uid is None:
        return None
    body = {"user_id": uid, "body": t.rng.choice(["Your meeting starts in 10 minutes", "Hi!"])}
    return await t.client.post("/sms", headers=t.api, json=body)  # 202; delivery is async


async def sms_counts(t: Traffic) -> httpx.Response | None:
    uid = t.user()
    return None if uid is None else await t.client.get(f"/users/{uid}/sms", headers=t.api)


async def enqueue_task(t: Traffic) -> httpx.Response:
    kind = t.rng.choice(["send_reminder", "refresh_tokens", "cleanup_sessions", "no_such_task"])
    body: dict[str, object] = {"type": kind}  # an unknown kind is a 422
    if kind == "send_reminder" and t.users:
        body["user_id"] = t.rng.choice(t.users)
    return await t.client.post("/tasks", headers=t.api, json=body)


async def oauth_list(t: Traffic) -> httpx.Response | None:
    uid = t.user()
    return None if uid is None else await t.client.get(f"/users/{uid}/integrations", headers=t.api)


async def health(t: Traffic) -> httpx.Response:
    path = t.rng.choice(["/health/overall", "/health/database"])  # the details need a token
    return await t.client.get(path)


# relative weights of the mix
MIX: dict[str, tuple[Action, int]] = {
    "register": (register, 10),
    "register_duplicate": (register_duplicate, 1),
    "register_invalid": (register_invalid, 1),
    "read_user": (read_user, 20),
    "read_unknown_user": (read_unknown_user, 2),
    "bad_token": (bad_token, 1),
    "login": (login, 8),
    "me": (me, 15),
    "logout": (logout, 4),
    "verify_phone": (verify_phone, 4),
    "oauth_connect": (oauth_connect, 5),
    "oauth_refresh": (oauth_refresh, 6),
    "oauth_revoke": (oauth_revoke, 2),
    "oauth_list": (oauth_list, 3),
    "send_sms": (send_sms, 8),
    "sms_counts": (sms_counts, 2),
    "enqueue_task": (enqueue_task, 6),
    "health": (health, 3),
}


# --- running the mix ------------------------------------------------------------------------


@dataclass
class Stats:
    statuses: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    sent: int = 0
    skipped: int = 0  # picked, but nothing to act on yet (no user, no session, ...)

    def record(self, action: str, outcome: str, seconds: float) -> None:
        self.sent += 1
        self.statuses[action][outcome] += 1
        self.latencies[action].append(seconds)

    def summary(self, elapsed: float) -> str:
        lines = [f"{self.sent} requests in {elapsed:.1f}s ({self.sent / max(elapsed, 1e-9):.1f}/s)"]
        lines.append(f"{'action':20s} {'count':>6s} {'p50 ms':>8s} {'p95 ms':>8s}  statuses")
        for action in sorted(self.statuses):
            times = sorted(self.latencies[action])
            p50 = statistics.median(times) * 1000
            p95 = times[min(len(times) - 1, int(0.95 * len(times)))] * 1000
            mix = " ".join(f"{k}:{v}" for k, v in sorted(self.statuses[action].items()))
            lines.append(f"{action:20s} {len(times):6d} {p50:8.1f} {p95:8.1f}  {mix}")
        return "\n".join(lines)


async def one(traffic: Traffic, stats: Stats, name: str, action: Action) -> None:
    start = time.perf_counter()
    try:
        response = await action(traffic)
    except Exception as exc:  # a transport error, or an answer the mix did not expect
        stats.record(name, f"error:{type(exc).__name__}", time.perf_counter() - start)
        return
    if response is None:
        stats.skipped += 1
    else:
        stats.record(name, str(response.status_code), time.perf_counter() - start)


async def run(args: argparse.Namespace, transport: httpx.AsyncBaseTransport | None = None) -> Stats:
    """Send the mix; ``transport`` replaces the network (tests drive an app in-process)."""
    rng = random.Random(args.seed)
    names = list(MIX)
    weights = [MIX[n][1] for n in names]
    redis = None
    if args.redis_url:
        redis = aioredis.from_url(args.redis_url)
    stats = Stats()
    total = min(args.max_requests, int(args.rate * args.duration))
    limits = httpx.Limits(max_connections=args.concurrency)
    async with httpx.AsyncClient(
        base_url=args.url, timeout=args.timeout, limits=limits, transport=transport
    ) as client:
        traffic = Traffic(client, args.token, rng, redis)
        gate = asyncio.Semaphore(args.concurrency)
        start = time.monotonic()
        next_report = start + args.progress
        pending: set[asyncio.Task[None]] = set()

        async def guarded(name: str) -> None:
            try:
                await one(traffic, stats, name, MIX[name][0])
            finally:
                gate.release()

        for i in range(total):
            delay = start + i / args.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            # at most `concurrency` requests in flight: past the server's capacity the rate
            # drops instead of a backlog piling up in this process
            await gate.acquire()
            if time.monotonic() - start > args.duration:
                gate.release()
                break
            name = rng.choices(names, weights)[0]
            task = asyncio.create_task(guarded(name))
            pending.add(task)
            task.add_done_callback(pending.discard)
            if time.monotonic() >= next_report:
                print(f"[{time.monotonic() - start:5.1f}s] {stats.sent} requests, "
                      f"{len(traffic.users)} users, {len(traffic.sessions)} sessions",
                      file=sys.stderr, flush=True)  # fmt: skip
                next_report += args.progress
        if pending:
            _, late = await asyncio.wait(pending, timeout=args.timeout + 1)
            for task in late:  # never let a request outlive the client
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        elapsed = time.monotonic() - start
    if redis is not None:
        await redis.aclose()
    print(stats.summary(elapsed))
    return stats


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m assistant.traffic", description=__doc__.split("\n")[0]
    )
    p.add_argument("--url", default=os.environ.get("ASSISTANT_URL", "http://127.0.0.1:8000"))
    p.add_argument("--token", default=os.environ.get("ASSISTANT_API_TOKEN", ""),
                   help="the API token (default: $ASSISTANT_API_TOKEN)")  # fmt: skip
    p.add_argument("--token-file", default=os.environ.get("ASSISTANT_API_TOKEN_FILE"),
                   help="the API token from a file ($ASSISTANT_API_TOKEN_FILE)")  # fmt: skip
    p.add_argument("--rate", type=float, default=20.0, help="requests per second (max 500)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds (max 86400)")
    p.add_argument("--max-requests", type=int, default=1_000_000)
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    p.add_argument("--progress", type=float, default=5.0, help="seconds between progress lines")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--redis-url", default=os.environ.get("ASSISTANT_TRAFFIC_REDIS_URL"),
                   help="read the codes in the simulated SMS outbox (dev only)")  # fmt: skip
    p.add_argument("--redis-url-file", default=os.environ.get("ASSISTANT_TRAFFIC_REDIS_URL_FILE"),
                   help="the Redis URL (it carries a password) from a file "
                        "($ASSISTANT_TRAFFIC_REDIS_URL_FILE)")  # fmt: skip
    args = p.parse_args(argv)
    if not 0 < args.rate <= 500:
        p.error("--rate must be in (0, 500]")
    if not 0 < args.duration <= 86_400:
        p.error("--duration must be in (0, 86400]")
    if args.max_requests < 1 or args.concurrency < 1:
        p.error("--max-requests and --concurrency must be at least 1")
    if args.token_file and not args.token:
        try:
            args.token = Path(args.token_file).read_text().strip()
        except OSError as exc:
            p.error(f"--token-file: {exc}")
    if not args.token:
        p.error("an API token is needed: --token, --token-file or ASSISTANT_API_TOKEN(_FILE)")
    if args.redis_url_file and not args.redis_url:
        try:
            args.redis_url = Path(args.redis_url_file).read_text().strip()
        except OSError as exc:
            p.error(f"--redis-url-file: {exc}")
    return args


def main(argv: list[str] | None = None) -> int:
    asyncio.run(run(parse(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
