"""The links bar every dashboard carries: the other dashboards, traces, logs."""

from __future__ import annotations

from typing import Any

from grafanalib import core as g

from dashboards import links


def dashboard_links(current: str, service: str = "gateway") -> list[Any]:
    """Links to every other dashboard (keeping the time range) and to Explore.

    ``service`` is the Jaeger/Loki service to open: a fixed name, or
    ``${service}`` on a dashboard with that variable.
    """
    others = [
        g.DashboardLink(
            type="link",
            title=links.TITLES[uid].removeprefix("Redline / "),
            uri=links.dashboard_path(uid),
            icon="dashboard",
            keepTime=True,
            includeVars=False,
            tooltip=links.TITLES[uid],
        )
        for uid in links.TITLES
        if uid != current
    ]
    explore = [
        g.DashboardLink(
            type="link",
            title=f"Traces of {service} (Jaeger)",
            uri=links.jaeger_search(service),
            icon="external link",
            keepTime=False,  # the time range is inside the Explore URL
            targetBlank=True,
            tooltip="Jaeger trace search in Grafana Explore, same time range",
        ),
        g.DashboardLink(
            type="link",
            title=f"Logs of {service} (Loki)",
            uri=links.loki_logs(service),
            icon="doc",
            keepTime=False,
            targetBlank=True,
            tooltip="The service's JSON log lines in Grafana Explore, same time range",
        ),
    ]
    return [*others, *explore]
