"""Redline's instrumentation library: traces, RED metrics, JSON logs and probes.

A service lists ``TelemetryPlugin(TelemetryConfig(service_name=...))`` in its
Litestar plugins and is instrumented; it never configures logging, tracing or
metrics itself. Everything else here is for the chassis and the resilient client.

The names below are loaded on first use (PEP 562): a process that needs one
part (the load generator exports spans with ``telemetry._otlp``) does not pay
for Litestar and httpx, 1.6 s of imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from telemetry._db import operation_name, query_logger, register_pool_collector
    from telemetry._http_client import (
        RESEND_COUNT_EXTENSION,
        URL_TEMPLATE_EXTENSION,
        InstrumentedTransport,
    )
    from telemetry._logging import configure_logging, current_request_id, get_logger
    from telemetry._metrics import (
        DURATION_BUCKETS,
        REGISTRY,
        exposition,
        register_callback_collector,
    )
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

# Where each public name lives.
_SOURCES = {
    "ConfigError": "telemetry._tracing",
    "DURATION_BUCKETS": "telemetry._metrics",
    "HEALTH_PATH": "telemetry._plugin",
    "Health": "telemetry._probes",
    "HealthCheck": "telemetry._probes",
    "HealthReport": "telemetry._probes",
    "INSTANCE_ID": "telemetry._tracing",
    "InstrumentedTransport": "telemetry._http_client",
    "LIVE_PATH": "telemetry._plugin",
    "METRICS_PATH": "telemetry._plugin",
    "READY_PATH": "telemetry._plugin",
    "REGISTRY": "telemetry._metrics",
    "RESEND_COUNT_EXTENSION": "telemetry._http_client",
    "TelemetryConfig": "telemetry._plugin",
    "TelemetryPlugin": "telemetry._plugin",
    "URL_TEMPLATE_EXTENSION": "telemetry._http_client",
    "configure_logging": "telemetry._logging",
    "current_request_id": "telemetry._logging",
    "exposition": "telemetry._metrics",
    "get_logger": "telemetry._logging",
    "operation_name": "telemetry._db",
    "query_logger": "telemetry._db",
    "register_callback_collector": "telemetry._metrics",
    "register_pool_collector": "telemetry._db",
}


def __getattr__(name: str) -> Any:
    module = _SOURCES.get(name)
    if module is None:
        raise AttributeError(f"module 'telemetry' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_SOURCES])


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
