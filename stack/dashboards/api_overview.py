"""API overview: the RED view of the API (rate, errors, duration) by endpoint, for the
components the ``component`` variable selects."""

from __future__ import annotations

from typing import Any

from .shared import API, dashboard, graph, instant_table, label_variable, stat

PATH = "api/api-overview.json"


def build() -> dict[str, Any]:
    sel = f'{API}, component=~"$component"'
    req = f"rate(http_requests_total{{{sel}}}[$__rate_interval])"
    err = f'rate(http_requests_total{{{sel}, status=~"5.."}}[$__rate_interval])'
    bucket = f"rate(http_request_duration_seconds_bucket{{{sel}}}[$__rate_interval])"
    panels = [
        stat(
            "Request rate",
            f"sum({req})",
            "reqps",
            "Requests per second answered by the API and the worker (all endpoints, all statuses; "
            "every replica once: a sum over the instances).",
        ),
        stat(
            "Error ratio (5xx)",
            f"(sum({err}) or vector(0)) / sum({req})",
            "percentunit",
            "Share of requests answered with a 5xx status (499, client gone, is not an error). "
            "Alert: ApiHighErrorRatio above 5 %.",
        ),
        stat(
            "Latency p95",
            f"histogram_quantile(0.95, sum by (le) ({bucket}))",
            "s",
            "95th percentile of the request duration over every endpoint. Alerts: "
            "ApiHighLatencyP95 above 0.5 s, ApiHighLatencyP99 above 2.5 s.",
        ),
        stat(
            "In progress",
            f"sum(http_requests_in_progress{{{sel}}})",
            "short",
            "Requests being served right now.",
        ),
        graph(
            "Requests by endpoint",
            "reqps",
            "Request rate per route template (method and endpoint); unknown paths are grouped "
            "as <unmatched>.",
            (f"sum by (method, endpoint) ({req})", "{{method}} {{endpoint}}"),
        ),
        graph(
            "Status mix",
            "reqps",
            "Request rate per HTTP status code. 499: the client went away before the response.",
            (f"sum by (status) ({req})", "{{status}}"),
        ),
        graph(
            "Latency p95 by endpoint",
            "s",
            "95th percentile of the request duration per route template, from the histogram "
            "buckets.",
            (
                f"histogram_quantile(0.95, sum by (le, method, endpoint) ({bucket}))",
                "{{method}} {{endpoint}}",
            ),
        ),
        graph(
            "5xx by endpoint",
            "reqps",
            "Rate of 5xx answers per route template: where the errors come from.",
            (f"sum by (method, endpoint) ({err})", "{{method}} {{endpoint}}"),
        ),
        graph(
            "5xx ratio by endpoint",
            "percentunit",
            "Share of each route template's requests answered with a 5xx (0 where none "
            "failed): an endpoint failing hard shows here even when the overall ratio stays "
            "low. Alert: ApiHighErrorRatio above 5 % over every endpoint.",
            (
                f"(sum by (method, endpoint) ({err}) or sum by (method, endpoint) ({req}) * 0)"
                f" / sum by (method, endpoint) ({req})",
                "{{method}} {{endpoint}}",
            ),
            lines=(0.05,),
        ),
        graph(
            "In progress by method",
            "short",
            "Concurrent requests per HTTP method; a rising line with flat throughput means "
            "requests queue up.",
            (f"sum by (method) (http_requests_in_progress{{{sel}}})", "{{method}}"),
        ),
        graph(
            "Health probes",
            "reqps",
            "Requests to the /health endpoints (load balancers, the container healthcheck), "
            "by endpoint and status; left out of the panels above and of the SLO. A flood "
            "shows here, while each check still runs at most once per interval.",
            (
                "sum by (endpoint, status) "
                f"(rate(http_excluded_requests_total{{{sel}}}[$__rate_interval]))",
                "{{endpoint}} {{status}}",
            ),
        ),
        graph(
            "Event-loop lag",
            "s",
            "How late each process's event loop runs a heartbeat due every 0.1 s: the 99th "
            "percentile per instance (a loop slow all the time: CPU-bound work, too much load), "
            "and the stall, how overdue the next beat is right now (a loop blocked at this "
            "moment, read where the scrapes reach it while the loop runs nothing). One short "
            "block hides in the percentile among thousands of beats; the alert counts it. "
            "Alert: EventLoopBlocked, a beat more than 1 s late or a stall over 1 s.",
            (
                "histogram_quantile(0.99, sum by (le, component, instance) "
                f"(rate(event_loop_lag_seconds_bucket{{{sel}}}[$__rate_interval])))",
                "p99 {{component}} {{instance}}",
            ),
            (
                f"max by (component, instance) (event_loop_stall_seconds{{{sel}}})",
                "stall {{component}} {{instance}}",
            ),
            lines=(1.0,),
        ),
        instant_table(
            "Slowest endpoints (p95 over the range)",
            "topk(10, histogram_quantile(0.95, sum by (le, method, endpoint) "
            f"(rate(http_request_duration_seconds_bucket{{{sel}}}[$__range]))))",
            "s",
            "The ten route templates with the highest 95th percentile latency over the "
            "dashboard's time range.",
        ),
    ]
    component = label_variable(
        "component", "Component", f"http_requests_total{{{API}}}", "component"
    )
    return dashboard(
        "assistant-api-overview",
        "API overview",
        "RED view of the personal-assistant API: rate, errors and duration by endpoint.",
        "api",
        panels,
        (component,),
    )
