"""Redline's instrumentation library: traces, RED metrics, JSON logs and probes.

A service lists ``TelemetryPlugin(TelemetryConfig(service_name=...))`` in its
Litestar plugins and is instrumented; it never configures logging, tracing or
metrics itself. Everything else here is for the chassis and the resilient client.
"""

from telemetry._db import operation_name, query_logger, register_pool_collector
from telemetry._http_client import (
    RESEND_COUNT_EXTENSION,
    URL_TEMPLATE_EXTENSION,
    InstrumentedTransport,
)
from telemetry._logging import configure_logging, current_request_id, get_logger
from telemetry._metrics import DURATION_BUCKETS, REGISTRY, exposition, register_callback_collector
from telemetry._plugin import (
    HEALTH_PATH,
    LIVE_PATH,
    METRICS_PATH,
    READY_PATH,
    TelemetryConfig,
    TelemetryPlugin,
)
from telemetry._probes import Health, HealthCheck, HealthReport
from telemetry._tracing import INSTANCE_ID, ConfigError

__all__ = [
    "DURATION_BUCKETS",
    "HEALTH_PATH",
    "INSTANCE_ID",
    "LIVE_PATH",
    "METRICS_PATH",
    "READY_PATH",
    "REGISTRY",
    "RESEND_COUNT_EXTENSION",
    "URL_TEMPLATE_EXTENSION",
    "ConfigError",
    "Health",
    "HealthCheck",
    "HealthReport",
    "InstrumentedTransport",
    "TelemetryConfig",
    "TelemetryPlugin",
    "configure_logging",
    "current_request_id",
    "exposition",
    "get_logger",
    "operation_name",
    "query_logger",
    "register_callback_collector",
    "register_pool_collector",
]
