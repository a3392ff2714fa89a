"""What `make lint` checks in the alerts beyond promtool: each ``for:`` spans at least
MIN_SCRAPES scrapes of the job the alert reads, in every environment; and every histogram
threshold (a ``le`` matcher, a ``histogram_quantile(...) > T``) is one of the histogram's
bucket boundaries, so it is exact rather than interpolated.

An alert's job: its expression's ``job="..."`` matcher; else the job whose target exposes the
metrics it reads (stack/producers.py); else, for recorded names, the environment's slowest job.
The intervals: the generated Prometheus configurations (prometheus/generated/), single and HA.
An alert without ``for:`` that counts events over a range (``increase(x[1h]) > 0``) fires on
the first event and holds for the range: that range must span the scrapes instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from . import ENVIRONMENTS, producers
from .promql import metric_names, seconds, selectors
from .rules import alerts, read, rule_files
from .yamlfile import load_yaml

MIN_SCRAPES = 3
_JOB = re.compile(r'\bjob\s*=\s*"([^"]+)"')
_LE = re.compile(r'\ble\s*=\s*"([^"]+)"')
_RANGE = re.compile(r"\[\s*(\w+)\s*\]")
_QUANTILE_THRESHOLD = re.compile(r"^\s*\)\s*([<>]=?)\s*([0-9.eE+-]+)")


def scrape_intervals(root: Path, env: str) -> dict[str, float]:
    """Each scrape job's interval in ``env`` (seconds), the slower one where the single and
    the HA configuration differ."""
    found: dict[str, float] = {}
    for path in sorted((root / "prometheus" / "generated").glob(f"prometheus.{env}*.yml")):
        config = load_yaml(path.read_text())
        default = seconds(config.get("global", {}).get("scrape_interval", "1m"))
        for job in config.get("scrape_configs") or []:
            interval = (
                seconds(job.get("scrape_interval", "")) if "scrape_interval" in job else default
            )
            found[job["job_name"]] = max(interval, found.get(job["job_name"], 0))
    return found


def jobs_read(expr: str, exposed_by: dict[str, str]) -> set[str]:
    """The jobs an expression reads: its ``job="..."`` matchers, else the jobs exposing its
    metrics; empty when neither says (recorded names, ``vector(1)``)."""
    named = set(_JOB.findall(expr))
    return named or {exposed_by[m] for m in metric_names(expr) if m in exposed_by}


def _exposed_by(root: Path) -> dict[str, str]:
    found = {name: job for job, names in producers.EXPOSED.items() for name in names}
    return found | dict.fromkeys(producers.app_metrics(), "personal_assistant_api")


def too_short(root: Path) -> list[str]:
    """Each alert whose ``for:`` (or, without one, whose counting range) is shorter than
    MIN_SCRAPES scrapes of its job in some environment, named with the environment."""
    exposed_by = _exposed_by(root)
    intervals = {env: scrape_intervals(root, env) for env in ENVIRONMENTS}
    problems = []
    for path in rule_files(root):
        for alert in alerts(read(path)):
            expr = alert["expr"]
            if not selectors(expr):
                continue  # vector(1): reads no job
            jobs = jobs_read(expr, exposed_by)
            held = seconds(alert["for"]) if "for" in alert else None
            ranges = [seconds(r) for r in _RANGE.findall(expr)]
            span = held if held is not None else min(ranges, default=0)
            what = (
                f"for: {alert['for']}" if held is not None else f"no for: and a range of {span:g} s"
            )
            for env, by_job in intervals.items():
                known = {j: by_job[j] for j in jobs if j in by_job}
                job, interval = max(
                    known.items(),
                    key=lambda kv: kv[1],
                    default=("the slowest job", max(by_job.values())),
                )
                if span < MIN_SCRAPES * interval:
                    problems.append(
                        f"{path.name}: {alert['alert']}: {what} is shorter than {MIN_SCRAPES} "
                        f"scrapes of {job} in {env} ({MIN_SCRAPES * interval:g} s)"
                    )
    return problems


def _histogram(name: str, buckets: dict[str, tuple[float, ...]]) -> str | None:
    """The app histogram a series name reads: ``x_bucket``, or a recorded ``..:x_bucket:..``."""
    return next((h for h in buckets if f"{h}_bucket" in name), None)


def _quantile_thresholds(expr: str) -> Iterator[tuple[str, float]]:
    """``(what histogram_quantile reads, the threshold it is compared with)`` in an expression."""
    for start in (m.end() for m in re.finditer(r"histogram_quantile\s*\(", expr)):
        depth, end = 1, start
        while depth and end < len(expr):
            depth += {"(": 1, ")": -1}.get(expr[end], 0)
            end += 1
        compared = _QUANTILE_THRESHOLD.match(expr[end - 1 :])
        if compared:
            yield expr[start : end - 1], float(compared[2])


def off_bucket(root: Path) -> list[str]:
    """Each histogram threshold in a rule that is not a bucket boundary of its histogram."""
    buckets = producers.histogram_buckets()
    problems = []
    for path in rule_files(root):
        for group in read(path)["groups"]:
            for rule in group["rules"]:
                name = rule.get("alert") or rule.get("record")
                for selector in selectors(rule["expr"]):
                    histogram = _histogram(selector.split("{")[0], buckets)
                    for le in _LE.findall(selector) if histogram else ():
                        if le != "+Inf" and float(le) not in buckets[histogram]:
                            problems.append(
                                f'{path.name}: {name}: le="{le}" is not a bucket of {histogram} '
                                f"{list(buckets[histogram])}"
                            )
                for inner, threshold in _quantile_thresholds(rule["expr"]):
                    histogram = next(
                        (h for n in metric_names(inner) if (h := _histogram(n, buckets))), None
                    )
                    if histogram and threshold not in buckets[histogram]:
                        problems.append(
                            f"{path.name}: {name}: histogram_quantile threshold {threshold:g} is "
                            f"not a bucket of {histogram} {list(buckets[histogram])}"
                        )
    return problems
