"""What runs beside the app while it serves: the event-loop monitor and the metrics listener
(which reads the process metrics after its answers, ``process.py``).

Both start on the server's event loop when its lifespan startup completes (under a server that
runs no lifespan, at the first request instead), and stop when its shutdown completes. A
listener that cannot bind its port fails the startup: the server exits and says why (at a
first request, it is logged). A loop closed without a shutdown (a test's) stops both too.
"""

from __future__ import annotations

import logging

from .eventloop import EventLoopMonitor
from .exposition import MetricsEndpoint
from .http import ASGIApp, Message, Receive, Scope, Send
from .listener import BUSY_LAG, LOOP_WAIT, Answer, Headers, MetricsListener
from .process import ProcessReadings
from .scrape import ScrapeTimeValues

log = logging.getLogger("app_metrics")


class Lifecycle:
    """Starts and stops the monitor and the listener (``None``: no listener, and every scrape
    reads the process metrics itself)."""

    def __init__(
        self,
        monitor: EventLoopMonitor,
        listener: MetricsListener | None,
        process: ProcessReadings | None = None,
    ) -> None:
        self.monitor = monitor
        self.listener = listener
        self.process = process
        self.pending = True  # the middleware starts them at a first request while this holds
        monitor.on_gone = self.stop

    def start(self) -> None:
        """Start both on the running loop (from its thread)."""
        self.pending = False
        self.monitor.start()
        if self.listener is not None:
            self.listener.start()
            if self.process is not None:
                self.process.enabled = True

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.stop()
        if self.process is not None:
            self.process.enabled = False
        self.monitor.stop()
        self.pending = True

    def first_request(self) -> None:
        try:
            self.start()
        except Exception:
            log.exception("app_metrics could not start its event-loop monitor or listener")

    async def lifespan(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app's lifespan, starting after its startup and stopping after its shutdown."""

        async def send_wrapper(message: Message) -> None:
            kind = message["type"]
            if kind == "lifespan.startup.complete":
                try:
                    self.start()
                except Exception as exc:
                    self.stop()
                    where = f" on port {self.listener.port}" if self.listener else ""
                    text = f"app_metrics could not start its metrics listener{where}: {exc}"
                    message = {"type": "lifespan.startup.failed", "message": text}
            elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                self.stop()
            await send(message)

        await app(scope, receive, send_wrapper)


class ListenerAnswers:
    """The listener's answers (``respond``): the endpoint's token check and body, the
    scrape-time values refreshed on the monitored loop for at most ``LOOP_WAIT``; while the
    loop is busy (its last beat later than ``BUSY_LAG``, or one overdue) the refresh
    is not waited for, and is asked for only once the answer is sent (``after``, with the
    process metrics' reading): asking wakes the loop through a socket, a system call that
    gives the GIL up, and taking it back from a saturated loop's thread takes up to 5 ms."""

    def __init__(
        self,
        endpoint: MetricsEndpoint,
        values: ScrapeTimeValues,
        monitor: EventLoopMonitor,
        process: ProcessReadings,
    ) -> None:
        self.endpoint, self.values, self.monitor, self.process = endpoint, values, monitor, process
        self._ask_after = False

    def respond(self, method: str, headers: Headers, query: str) -> Answer:
        refused = self.endpoint.refusal(method, headers.get(b"authorization"))
        if refused is not None:
            status, body, extra = refused
            return status, extra, body
        busy = self.monitor.lag > BUSY_LAG or self.monitor.stall() > 0
        if busy:
            self._ask_after = True
            self.values.refresh_from(self.monitor.loop, 0.0, ask=False)
        else:
            self.values.refresh_from(self.monitor.loop, LOOP_WAIT)
        body, extra = self.endpoint.body(headers, query)
        return 200, extra, body

    def after(self) -> None:
        if self._ask_after:
            self._ask_after = False
            self.values.ask(self.monitor.loop)
        self.process.read()
