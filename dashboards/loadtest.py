"""The overview's load-test row: what Locust sees next to what the gateway sees.

Locust names requests by route template (loadtests/journeys.py), so its
``name`` label and the gateway's ``http_route`` line up, and its latency
histogram has the server's buckets: one ``histogram_quantile`` each side.
Empty unless a load test is running and Prometheus scrapes it (job
``locust``, loadtests/metrics.py).
"""

from __future__ import annotations

from typing import Any

from dashboards._grafana import target
from dashboards._panels import timeseries
from dashboards._promql import HTTP, RATE, quantile, sum_rate

CLIENT = "locust_request_duration_seconds"
# The public API only: the gateway's probes and /metrics are not load-test traffic.
GATEWAY_API = '{job="gateway",http_route=~"/api/v1/.*"}'
_ALL = "{}"


def _latency(q: float) -> Any:
    pct = int(q * 100)
    return timeseries(
        f"Load test: p{pct} per route, client (Locust) vs server (gateway)",
        f"p{pct} latency of each route as Locust measured it and as the gateway measured it. "
        "The gap is the network, the gateway's accept queue and the load generator's own "
        "delays. Locust is closed-loop: when the platform saturates it sends less, so its "
        "latency under overload is optimistic (coordinated omission).",
        [
            target(
                quantile(q, CLIENT, _ALL, "method, name"),
                "client {{method}} {{name}}",
                exemplar=True,
            ),
            target(
                quantile(q, HTTP, GATEWAY_API, "http_request_method, http_route"),
                "server {{http_request_method}} {{http_route}}",
                exemplar=True,
            ),
        ],
        "s",
    )


def panels() -> list[Any]:
    return [
        _latency(0.95),
        _latency(0.99),
        timeseries(
            "Load test: requests per second, client vs server",
            "Requests Locust made per second, and requests the gateway's public API served. "
            "Server above client: other traffic besides the load test.",
            [
                target(sum_rate("locust_requests_total", _ALL), "client (Locust)"),
                target(sum_rate(f"{HTTP}_count", GATEWAY_API), "server (gateway /api/v1)"),
            ],
            "reqps",
        ),
        timeseries(
            "Load test: failures per request (client side)",
            "Share of each request Locust counted as failed: an unexpected status (declines "
            "and sold-out answers are expected), a 429, or no response at all.",
            [
                target(
                    f"sum by (method, name) (rate(locust_request_failures_total[{RATE}]))\n"
                    f"/ sum by (method, name) (rate(locust_requests_total[{RATE}]))",
                    "{{method}} {{name}}",
                )
            ],
            "percentunit",
        ),
        timeseries(
            "Load test: simulated users",
            "Users Locust runs now, by journey (Browser: anonymous catalog; Shopper: signs "
            "in and buys). The load shape shows here.",
            [target("sum by (user_class) (locust_users)", "{{user_class}}")],
            "short",
            stacked=True,
        ),
        timeseries(
            "Load generator CPU",
            "CPU of each Locust process (1 = one core). Near 1, the numbers describe Locust, "
            "not the platform: add worker processes (--processes) or machines.",
            [target("max by (process) (locust_cpu_usage_ratio)", "{{process}}")],
            "percentunit",
        ),
    ]
