"""RED metrics in Prometheus form, with trace-id exemplars.

Names are the Prometheus translations of the OpenTelemetry semantic-convention
instruments (``http.server.request.duration`` becomes
``http_server_request_duration_seconds`` with ``http_request_method``,
``http_route`` and ``http_response_status_code`` labels), so dashboards written
against a Collector's Prometheus exporter work here unchanged.

One registry per process. prometheus-client's multiprocess mode drops exemplars,
so each uvicorn process runs one worker and is its own scrape target; scale by
running more instances (see README, "Why one worker per process").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import prometheus_client
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Gauge,
    Histogram,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

# `_created` series double the series count and Prometheus 2.x stores them as
# ordinary gauges; nobody graphs them.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

# Sub-millisecond to 10 s: the OTel default boundaries for
# http.server.request.duration, plus 0.5 ms and 1 ms for in-memory routes.
DURATION_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)

REGISTRY = CollectorRegistry()
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    # The default collectors live in the global registry; register the same
    # objects here so /metrics serves one registry with everything in it.
    REGISTRY.register(_collector)

# http_server_request_duration_seconds and http_server_active_requests are in
# telemetry/_red.py: counted lock-free on the hot path, exported by a collector.
HTTP_CLIENT_DURATION = Histogram(
    "http_client_request_duration_seconds",
    "Duration of outgoing HTTP requests, per downstream service and outcome.",
    [
        "server_address",
        "peer_service",
        "http_request_method",
        "http_response_status_code",
        "error_type",
    ],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
HTTP_CLIENT_ACTIVE = Gauge(
    "http_client_active_requests",
    "Number of outgoing HTTP requests in flight, per downstream service.",
    ["peer_service"],
    registry=REGISTRY,
)
DB_OPERATION_DURATION = Histogram(
    "db_client_operation_duration_seconds",
    "Duration of database operations, by operation name (SELECT, INSERT, ...).",
    ["db_system_name", "db_namespace", "db_operation_name", "error_type"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
DB_CONNECTION_WAIT = Histogram(
    "db_client_connection_wait_time_seconds",
    "Time spent waiting to acquire a connection from the pool.",
    ["pool_name"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)

# Methods outside this set are reported as _OTHER, as the semantic conventions
# require, so a client cannot mint label values.
KNOWN_METHODS: frozenset[str] = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)


def normalize_method(method: str) -> str:
    return method if method in KNOWN_METHODS else "_OTHER"


def exposition(accept: str | None, registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """Render the registry in the format the scraper asked for.

    Exemplars exist only in the OpenMetrics format; Prometheus asks for it when
    exemplar storage is on.
    """
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


def register_callback_collector(
    collect: Callable[[], Iterable[prometheus_client.Metric]],
    registry: CollectorRegistry = REGISTRY,
) -> Collector:
    """Register a collector whose samples are computed at scrape time."""

    class _Callback(Collector):
        def collect(self) -> Iterable[prometheus_client.Metric]:
            return collect()

    collector = _Callback()
    registry.register(collector)
    return collector
