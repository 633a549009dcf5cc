"""Grafana dashboards as code (grafanalib), rendered to ``generated/<uid>.json``.

``python -m dashboards`` regenerates the JSON Grafana provisions;
``dashboards.queries.expand(dashboard_json, {"service": "orders"})`` lists every
panel query with its variables filled in, for tests against a real Prometheus.
One module per dashboard (``overview``, ``service``, ``resilience``,
``orders``); ``_grafana.finalize`` is the one place grafanalib's output is
corrected for current Grafana.
"""
