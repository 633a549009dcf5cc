"""Service detail: one service's RED by route, its dependencies, database and process.

Templated by ``service`` (every job that serves HTTP) and ``route`` (that
job's route templates, All by default). Latency panels ask for exemplars: a
dot on the graph is a real request, and clicking it opens its trace in Jaeger
(the Prometheus data source maps the ``trace_id`` exemplar label to the Jaeger
data source).
"""

from __future__ import annotations

from grafanalib import core as g

from dashboards import links, signals
from dashboards._grafana import field_links, place, target
from dashboards._panels import heatmap, state_timeline, timeseries
from dashboards._promql import (
    HTTP,
    HTTP_CLIENT,
    RATE,
    quantile,
    ratio_numerator_or_zero,
    sel,
    sum_rate,
)
from dashboards.nav import dashboard_links

SERVICE = 'job="$service"'
ROUTE = 'http_route=~"$route"'
REQUESTS = sel(SERVICE, ROUTE)
JOB = sel(SERVICE)

_TRACES = field_links(("Traces of $service in Jaeger", links.jaeger_search("${service}")))
_LOGS = field_links(("Logs of $service in Loki", links.loki_logs("${service}")))


def _variables() -> g.Templating:
    return g.Templating(
        list=[
            g.Template(
                name="service",
                label="Service",
                # The services only: up{} would offer Prometheus, the Collector, ...
                query=f"label_values({HTTP}_count, job)",
                default="gateway",
                refresh=g.REFRESH_ON_TIME_RANGE_CHANGE,
            ),
            g.Template(
                name="route",
                label="Route",
                query=f'label_values({HTTP}_count{{job="$service"}}, http_route)',
                includeAll=True,
                multi=True,
                allValue=".*",
                default="$__all",
                refresh=g.REFRESH_ON_TIME_RANGE_CHANGE,
            ),
        ]
    )


def _requests() -> list[object]:
    return [
        timeseries(
            "Requests per second by route",
            "Requests $service handled, per route template (unmatched = no route, e.g. a 404 "
            "for an unknown path).",
            [target(signals.request_rate(REQUESTS, "http_route"), "{{http_route}}")],
            "reqps",
            links=_LOGS,
        ),
        timeseries(
            "Error ratio by route (5xx)",
            "Share of each route's responses with a 5xx status; 0 when the route has traffic "
            "and no errors. The Logs link opens $service's log lines, where each failed "
            "request is logged with its trace_id.",
            [target(signals.error_ratio(REQUESTS, "http_route"), "{{http_route}}")],
            "percentunit",
            links=_LOGS,
        ),
        timeseries(
            "Responses per second by status code",
            "All of $service's responses (selected routes) by HTTP status code.",
            [
                target(
                    sum_rate(f"{HTTP}_count", REQUESTS, "http_response_status_code"),
                    "{{http_response_status_code}}",
                )
            ],
            "reqps",
            stacked=True,
        ),
        timeseries(
            "In-flight requests",
            "Requests $service is processing right now, by method: a climb with flat "
            "throughput means requests are waiting on something.",
            [
                target(
                    f"sum by (http_request_method) (http_server_active_requests{JOB})",
                    "{{http_request_method}}",
                )
            ],
            "short",
        ),
    ]


def _latency() -> list[object]:
    return [
        timeseries(
            "Latency p50 / p95 / p99 (selected routes)",
            "How long $service's requests took, all selected routes together. Dots are "
            "exemplars: single requests with their trace; click one to open it in Jaeger.",
            [
                target(signals.latency(q, REQUESTS), f"p{int(q * 100)}", exemplar=True)
                for q in (0.5, 0.95, 0.99)
            ],
            "s",
            links=_TRACES,
        ),
        timeseries(
            "p99 latency by route",
            "The slowest 1% of each route's requests took at least this long. Exemplar dots "
            "link to traces.",
            [
                target(
                    signals.latency(0.99, REQUESTS, "http_route"), "{{http_route}}", exemplar=True
                )
            ],
            "s",
            links=_TRACES,
        ),
        heatmap(
            "Latency distribution",
            "Requests per latency bucket over time (darker = more). Bands show modes, e.g. a "
            "cache hit and a database round trip; exemplars are marked.",
            [
                target(
                    f"sum by (le) (increase({HTTP}_bucket{REQUESTS}[{RATE}]))",
                    "{{le}}",
                    exemplar=True,
                    fmt="heatmap",
                )
            ],
            "s",
        ),
    ]


def _dependencies() -> list[object]:
    client = sel(SERVICE)
    return [
        timeseries(
            "Outgoing calls per second by dependency",
            "Calls $service made to other services (empty for services that call none).",
            [target(sum_rate(f"{HTTP_CLIENT}_count", client, "peer_service"), "{{peer_service}}")],
            "reqps",
        ),
        timeseries(
            "Failed outgoing calls by dependency and error",
            "Calls that got a 5xx (error = the status code) or no response (error = the "
            "exception, e.g. ConnectTimeout). 0 for a dependency that answers fine.",
            [
                target(
                    ratio_numerator_or_zero(
                        f"{HTTP_CLIENT}_count", 'error_type!=""', client, "peer_service, error_type"
                    ),
                    "{{peer_service}} {{error_type}}",
                )
            ],
            "reqps",
        ),
        timeseries(
            "Outgoing call p99 latency by dependency",
            "The slowest 1% of $service's calls to each dependency, retries not included "
            "(each attempt is one call). Exemplar dots link to traces.",
            [
                target(
                    quantile(0.99, HTTP_CLIENT, client, "peer_service"),
                    "{{peer_service}}",
                    exemplar=True,
                )
            ],
            "s",
            links=_TRACES,
        ),
        timeseries(
            "Outgoing calls in flight by dependency",
            "Calls $service is waiting on right now, per dependency.",
            [
                target(
                    f"sum by (peer_service) (http_client_active_requests{JOB})", "{{peer_service}}"
                )
            ],
            "short",
        ),
    ]


def _database() -> list[object]:
    return [
        timeseries(
            "Connection pool: used, idle and max",
            "Connections in $service's database pool. Used at max means callers queue for a "
            "connection (next panel).",
            [
                target(f"sum by (state) (db_client_connections_usage{JOB})", "{{state}}"),
                target(f"sum(db_client_connections_max{JOB})", "max"),
            ],
            "short",
        ),
        timeseries(
            "Waiting for a connection",
            "Callers waiting for a connection from $service's pool right now; sustained > 0 "
            "fires DatabasePoolSaturated.",
            [
                target(f"sum(db_client_connections_pending_requests{JOB})", "waiting callers"),
            ],
            "short",
        ),
        timeseries(
            "Connection wait time p99",
            "The slowest 1% of connection acquisitions from $service's pool.",
            [
                target(
                    quantile(0.99, "db_client_connection_wait_time_seconds", JOB, "pool_name"),
                    "{{pool_name}}",
                    exemplar=True,
                )
            ],
            "s",
        ),
        timeseries(
            "Query p99 latency by operation",
            "The slowest 1% of $service's database operations, by SQL verb. Exemplar dots link "
            "to the trace that ran the query.",
            [
                target(
                    quantile(
                        0.99, "db_client_operation_duration_seconds", JOB, "db_operation_name"
                    ),
                    "{{db_operation_name}}",
                    exemplar=True,
                )
            ],
            "s",
            links=_TRACES,
        ),
        timeseries(
            "Queries per second by operation",
            "Database operations $service ran, by SQL verb.",
            [
                target(
                    sum_rate(
                        "db_client_operation_duration_seconds_count", JOB, "db_operation_name"
                    ),
                    "{{db_operation_name}}",
                )
            ],
            "ops",
        ),
    ]


def _process() -> list[object]:
    return [
        timeseries(
            "CPU usage",
            "CPU time $service's process used per second: 1 = one core busy. A Python "
            "process cannot use much more than one core.",
            [target(f"rate(process_cpu_seconds_total{JOB}[{RATE}])", "{{instance}}")],
            "percentunit",
        ),
        timeseries(
            "Resident memory",
            "Memory $service's process holds in RAM.",
            [target(f"process_resident_memory_bytes{JOB}", "{{instance}}")],
            "bytes",
        ),
        timeseries(
            "Event-loop lag",
            "How late the asyncio event loop ran a scheduled callback: everything in the "
            "process waits this long. Above ~100 ms something blocks the loop.",
            [target(f"python_asyncio_event_loop_lag_seconds{JOB}", "{{instance}}")],
            "s",
        ),
        timeseries(
            "Spans exported by outcome",
            "Spans $service's OTLP exporter sent (exported) or failed to send (by error).",
            [
                target(
                    "label_replace(\n  "
                    + sum_rate("otel_sdk_exporter_span_exported_total", JOB, "error_type")
                    + ',\n  "error_type", "exported", "error_type", ""\n)',
                    "{{error_type}}",
                )
            ],
            "short",
        ),
        state_timeline(
            "Health checks",
            "Each readiness check of $service over time: passing (green) or failing (red). "
            "GET /health on the service says why a check fails.",
            [target(f"max by (check) (health_check_passing{JOB})", "{{check}}")],
            [(1, "passing", "green"), (0, "failing", "red")],
        ),
    ]


def build() -> g.Dashboard:
    return g.Dashboard(
        title=links.TITLES[links.SERVICE],
        uid=links.SERVICE,
        description="One service in depth: RED by route, latency with exemplars, dependencies, "
        "database pool, process.",
        tags=["redline"],
        timezone="browser",
        refresh="30s",
        time=g.Time("now-1h", "now"),
        graphTooltip=1,
        templating=_variables(),
        links=dashboard_links(links.SERVICE, service="${service}"),
        panels=place(
            [
                ("Requests (RED) — $service", _requests(), 4),
                ("Latency", _latency(), 3),
                ("Outgoing calls", _dependencies(), 4),
                ("Database", _database(), 5),
                ("Process", _process(), 5),
            ]
        ),
    )
