"""The anomaly rules scored on a replayed month (``make evaluate-anomaly``).

A seeded generator writes four weeks of the app's series with labelled anomalies
(``generate``), ``promtool tsdb create-blocks-from openmetrics`` turns them into a TSDB, the
recording rules of ``prometheus/rules/anomaly.rules.yml`` are backfilled over it and the
alerts' expressions read from a local Prometheus on 127.0.0.1 (``replay``); ``score`` turns
the alerts into precision, recall, false alerts per week and time to detect, beside a
static-threshold baseline on the same data (``static``), and ``report`` prints them.
"""
