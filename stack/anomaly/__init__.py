"""The anomaly rules scored on a replayed month (``make evaluate-anomaly``, docs/anomaly.md).

``generate`` (with ``model``, ``anomalies``, ``signals``) writes four weeks of the app's series
with labelled anomalies; ``backfill`` (``openmetrics``) turns them into a TSDB with ``promtool
tsdb create-blocks-from openmetrics``; ``recording`` evaluates the recording rules of
``prometheus/rules/anomaly.rules.yml`` over it on a local Prometheus (``prometheus``) and
``alerts`` the alerts, their ``for:`` applied; ``score`` counts catches, misses and false alerts,
``static`` is the static-threshold baseline on the same data, ``noise`` the size an anomaly
must have to count as detectable; ``evaluate`` runs it all and ``report`` prints it.
"""
