"""Platform overview: is Redline healthy, and which service is not?

Top: the gateway's SLOs from the recording rules in alerts/ (what users get
over 30 days, and how much error budget is left). Then RED per service, then
the things that explain a red service: targets down, breakers not closed,
readiness, spans lost. Last, while a load test runs, Locust's view of the
gateway beside the gateway's own (dashboards/loadtest.py).
"""

from __future__ import annotations

from typing import Any

from grafanalib import core as g

from alerts.slo import LatencySLI
from alerts.slo_rules import ERROR_RATIO_30D
from alerts.slos import GATEWAY_AVAILABILITY, GATEWAY_LATENCY, SLOS
from dashboards import links, loadtest, signals
from dashboards._grafana import field_links, place, target
from dashboards._panels import stat, timeseries
from dashboards.nav import dashboard_links

_SERVICE_LINK = field_links(
    (
        "${__field.labels.job}: service detail",
        links.dashboard_path(links.SERVICE, service="${__field.labels.job}")
        + "&${__url_time_range}",
    )
)


def _slo_panels() -> list[Any]:
    panels: list[Any] = []
    for slo in (GATEWAY_AVAILABILITY, GATEWAY_LATENCY):
        what = "latency" if isinstance(slo.sli, LatencySLI) else "availability"
        panels.append(
            stat(
                f"Gateway {what}, last 30 days",
                f"Share of good requests over the SLO window: {slo.description}. "
                f"Objective {slo.objective:.1%}. From the recording rule {ERROR_RATIO_30D}.",
                [target(signals.slo_attained(slo.name), "attained")],
                "percentunit",
                decimals=2,
                thresholds=(("red", None), ("green", slo.objective)),
            )
        )
        panels.append(
            stat(
                f"Gateway {what} error budget left",
                "Share of the 30-day error budget not yet spent; below 0 it is overspent and "
                "risky changes should wait. The burn-rate alerts fire long before it runs out.",
                [target(signals.slo_budget_left(slo.name), "remaining")],
                "percentunit",
                decimals=1,
                thresholds=(("red", None), ("orange", 0.25), ("green", 0.5)),
            )
        )
    return panels


def _burn_rate() -> Any:
    return timeseries(
        "Error budget burn rate (1 h window), every SLO",
        "How many times faster than sustainable each SLO spends its budget over the last hour: "
        "1 spends exactly the budget in 30 days; the page threshold is 14.4. SLOs: "
        + ", ".join(s.name for s in SLOS)
        + ".",
        [target(signals.BURN_RATE, "{{slo}}")],
        "suffix:×",
    )


def build() -> g.Dashboard:
    per_service = [
        timeseries(
            "Requests per second by service",
            "Requests each service handled, all routes (probes and /metrics are not counted).",
            [target(signals.request_rate(by="job"), "{{job}}")],
            "reqps",
            links=_SERVICE_LINK,
        ),
        timeseries(
            "Error ratio by service (5xx)",
            "Share of each service's responses with a 5xx status. 4xx are the caller's "
            "mistakes and are not errors here. 0 when a service has traffic and no errors.",
            [target(signals.error_ratio(by="job"), "{{job}}")],
            "percentunit",
            links=_SERVICE_LINK,
        ),
    ]
    latency = [
        timeseries(
            f"p{int(q * 100)} latency by service",
            f"{int(q * 100)}% of each service's requests finished faster than this "
            "(histogram_quantile over the request-duration buckets; interpolated within a bucket).",
            [target(signals.latency(q, by="job"), "{{job}}", exemplar=True)],
            "s",
            links=_SERVICE_LINK,
        )
        for q in (0.5, 0.95, 0.99)
    ]
    health = [
        stat(
            "Targets down",
            "Scrape targets Prometheus cannot reach right now (up == 0), services and "
            "infrastructure alike. TargetDown fires after one minute.",
            [target(signals.TARGETS_DOWN, "targets down", instant=True)],
            "short",
            thresholds=(("green", None), ("red", 1)),
        ),
        stat(
            "Services not ready",
            "Services whose /health/ready answers 503 (a readiness check fails).",
            [target(signals.SERVICES_NOT_READY, "not ready", instant=True)],
            "short",
            thresholds=(("green", None), ("red", 1)),
        ),
        stat(
            "Circuit breakers not closed",
            "Breakers open, half-open or forced open, per calling service and dependency. "
            "A breaker not closed means calls to that dependency are being refused.",
            [
                target(
                    signals.BREAKERS_NOT_CLOSED,
                    "{{job}} → {{breaker}}",
                    instant=True,
                )
            ],
            "short",
            thresholds=(("green", None), ("red", 1)),
            mappings=[
                {
                    "type": "value",
                    "options": {
                        "0": {"text": "closed", "color": "green"},
                        "1": {"text": "NOT CLOSED", "color": "red"},
                    },
                }
            ],
            links=field_links(
                (
                    "Resilience dashboard",
                    links.dashboard_path(links.RESILIENCE) + "?${__url_time_range}",
                )
            ),
        ),
        timeseries(
            "Spans failing to export, by service",
            "Spans per second each service's OTLP exporter failed to send (error_type set). "
            "Non-zero means traces, and the exemplar links to them, are incomplete.",
            [target(signals.SPANS_FAILING, "{{job}}")],
            "short",
        ),
    ]
    return g.Dashboard(
        title=links.TITLES[links.OVERVIEW],
        uid=links.OVERVIEW,
        description="Is Redline healthy, and if not, which service? SLOs, RED per service, causes.",
        tags=["redline"],
        timezone="browser",
        refresh="30s",
        time=g.Time("now-1h", "now"),
        graphTooltip=1,
        links=dashboard_links(links.OVERVIEW),
        panels=place(
            [
                ("Gateway SLOs (30-day window)", [*_slo_panels()], 4),
                ("Error budget burn", [_burn_rate()], 1),
                ("Traffic and errors by service", per_service, 2),
                ("Latency by service", latency, 3),
                ("What might explain it", health, 4),
                ("Load test: Locust (client) vs gateway (server)", loadtest.panels(), 3),
            ]
        ),
    )
