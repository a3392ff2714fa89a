"""What runs beside the app while it serves: the event-loop monitor, the metrics listener and,
with it, the process metrics' reader (``process.py``).

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
from .listener import LOOP_WAIT, Answer, Headers, MetricsListener, Respond
from .process import ProcessReadings
from .scrape import ScrapeTimeValues

log = logging.getLogger("app_metrics")


class Lifecycle:
    """Starts and stops the monitor and the listener (``None``: no listener, and no reader:
    the in-app ``/metrics`` reads the process metrics itself)."""

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
                self.process.start()

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.stop()
        if self.process is not None:
            self.process.stop()
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


def listener_answer(
    endpoint: MetricsEndpoint, values: ScrapeTimeValues, monitor: EventLoopMonitor
) -> Respond:
    """The listener's answers: the endpoint's token check and body, the scrape-time values
    refreshed on the monitored loop for at most ``LOOP_WAIT``, and not waited for at all
    while the loop is too late to make it (its last beat later than that, or one overdue)."""

    def respond(method: str, headers: Headers, query: str) -> Answer:
        refused = endpoint.refusal(method, headers.get(b"authorization"))
        if refused is not None:
            status, body, extra = refused
            return status, extra, body
        busy = monitor.lag > LOOP_WAIT or monitor.stall() > 0
        values.refresh_from(monitor.loop, 0.0 if busy else LOOP_WAIT)
        body, extra = endpoint.body(headers, query)
        return 200, extra, body

    return respond
