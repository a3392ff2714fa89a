"""A webhook receiver that records Alertmanager notifications (dev, tests; standard library only).

    python receiver/webhook_receiver.py --port 9095 --log notifications.jsonl [--timeout 10]

- ``POST /<any path>``: a notification (at most 4 MiB). The JSON body is appended, with the time
  and path, as one line of ``--log`` (kept across restarts) and to the in-memory list: the last
  1,000 notifications, and no more than 16 MiB of them (the oldest go first). 200, or 400 for
  a body that is not a JSON object or a missing or malformed ``Content-Length``.
- ``GET /notifications``: the recorded notifications, oldest first, as a JSON list
  (``?receiver=<name>`` filters on the payload's receiver).
- ``GET /-/healthy``: 200.
- ``--check URL``: exit 0 when URL answers 200 (the container's healthcheck), 1 otherwise.

At start only the log's last 16 MiB are read. A connection that sends nothing for ``--timeout``
seconds (a request head, a body) is closed.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.request
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

MAX_BODY_BYTES = 4 * 1024 * 1024
KEEP = 1000  # notifications kept in memory
KEEP_BYTES = 16 * 1024 * 1024  # and their JSON's size in all
TIMEOUT = 10.0  # seconds a client may stay silent


class Store:
    def __init__(self, log: Path | None) -> None:
        self._lock = threading.Lock()
        self._items: deque[tuple[dict, int]] = deque()  # (notification, its JSON's size)
        self._bytes = 0
        self._log = log
        if log is not None and log.exists():
            for line in _tail(log, KEEP_BYTES):
                try:
                    self._keep(json.loads(line), len(line))
                except ValueError:
                    continue  # a torn line: after a crash, or where the tail was cut

    def add(self, path: str, payload: dict) -> None:
        item = {"received_at": time.time(), "path": path, "payload": payload}
        line = json.dumps(item, separators=(",", ":"))
        with self._lock:
            self._keep(item, len(line))
            if self._log is not None:
                with self._log.open("a") as f:
                    f.write(line + "\n")

    def _keep(self, item: dict, size: int) -> None:
        self._items.append((item, size))
        self._bytes += size
        while len(self._items) > KEEP or self._bytes > KEEP_BYTES:
            self._bytes -= self._items.popleft()[1]

    def items(self, receiver: str | None) -> list[dict]:
        with self._lock:
            items = [item for item, _ in self._items]
        return [i for i in items if receiver is None or i["payload"].get("receiver") == receiver]


def _tail(log: Path, size: int) -> list[bytes]:
    """The lines of the last ``size`` bytes of ``log`` (the first one cut, unless whole)."""
    with log.open("rb") as f:
        start = max(f.seek(0, 2) - size, 0)
        f.seek(start)
        lines = f.read(size).splitlines()
    return lines[1:] if start else lines


def handler_for(store: Store, timeout: float = TIMEOUT) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def setup(self) -> None:
            self.timeout = timeout  # the socket's: a silent client is cut off
            super().setup()

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/-/healthy":
                self._reply(200, {"status": "ok"})
            elif url.path == "/notifications":
                receiver = parse_qs(url.query).get("receiver", [None])[0]
                self._reply(200, store.items(receiver))
            else:
                self._reply(404, {"error": f"no such path: {url.path}"})

        def do_POST(self) -> None:
            declared = self.headers.get("Content-Length") or "0"
            length = int(declared) if declared.isdigit() else -1
            if not 0 < length <= MAX_BODY_BYTES:
                self.close_connection = True  # the body's end is unknown: read none of it
                self._reply(400, {"error": f"Content-Length {declared!r}: 1..{MAX_BODY_BYTES}"})
                return
            try:
                payload = json.loads(self.rfile.read(length))
            except ValueError as exc:
                self._reply(400, {"error": f"body is not JSON: {exc}"})
                return
            if not isinstance(payload, dict):
                self._reply(400, {"error": "body is not a JSON object"})
                return
            store.add(urlsplit(self.path).path, payload)
            self._reply(200, {"status": "recorded"})

        def _reply(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    return Handler


def check(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9095)
    p.add_argument("--log", type=Path, default=None, help="JSON lines file (appended)")
    p.add_argument("--check", metavar="URL", help="probe URL and exit (healthcheck)")
    p.add_argument("--timeout", type=float, default=TIMEOUT, help="seconds a client may be silent")
    args = p.parse_args(argv)
    if args.check:
        return check(args.check)
    handler = handler_for(Store(args.log), args.timeout)
    server = ThreadingHTTPServer((args.host, args.port), handler)
    print(f"webhook receiver on http://{args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
