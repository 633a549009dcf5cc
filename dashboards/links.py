"""Dashboard uids and the URLs that connect dashboards, traces and logs.

The uids are a contract with alert annotations (``dashboard:``) and with the
people who bookmark them: never rename one.
"""

from __future__ import annotations

import json
from urllib.parse import quote

OVERVIEW = "redline-overview"
SERVICE = "redline-service"
RESILIENCE = "redline-resilience"
ORDERS = "redline-orders"
PIPELINE = "redline-pipeline"

TITLES: dict[str, str] = {
    OVERVIEW: "Redline / Platform overview",
    SERVICE: "Redline / Service detail",
    RESILIENCE: "Redline / Resilience",
    ORDERS: "Redline / Orders & saga",
    PIPELINE: "Redline / Telemetry pipeline",
}

# Grafana data source uids, as telemetry/grafana/provisioning names them.
PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}
JAEGER = {"type": "jaeger", "uid": "jaeger"}
LOKI = {"type": "loki", "uid": "loki"}


def dashboard_path(uid: str, **variables: str) -> str:
    """A relative link to a dashboard; values may be Grafana variables.

    ``${__field.labels.job}`` in a data link, for instance, is the series' job.
    """
    query = "&".join(f"var-{k}={v}" for k, v in variables.items())
    return f"/d/{uid}" + (f"?{query}" if query else "")


def _explore(datasource: dict[str, str], query: dict[str, object]) -> str:
    pane = {
        "datasource": datasource["uid"],
        "queries": [{"refId": "A", "datasource": datasource, **query}],
        "range": {"from": "${__from}", "to": "${__to}"},
    }
    # $, { and } stay unescaped so Grafana still sees and interpolates ${...}.
    panes = quote(json.dumps({"redline": pane}, separators=(",", ":")), safe="${}:,")
    return f"/explore?schemaVersion=1&panes={panes}"


def jaeger_search(service: str) -> str:
    """Explore: Jaeger's trace search for ``service`` over the dashboard's time range."""
    return _explore(JAEGER, {"queryType": "search", "service": service})


def loki_logs(service: str, line_filter: str = "") -> str:
    """Explore: the service's JSON log lines in Loki (the Collector sets service_name)."""
    expr = f'{{service_name="{service}"}}' + (f" |= `{line_filter}`" if line_filter else "")
    return _explore(LOKI, {"expr": expr, "queryType": "range"})
