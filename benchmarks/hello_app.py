"""The hello route the overhead benchmark serves: plain, instrumented, or the stock stack.

``python benchmarks/hello_app.py plain|instrumented|stock PORT`` — one uvicorn
worker, same server options for all, so the difference is the telemetry.

``stock`` is what a Litestar user would otherwise assemble from the shelf:
Litestar's own OpenTelemetry plugin as shipped (its ASGI middleware, default
settings) on an SDK tracer provider with a batch processor and the OTLP/HTTP
exporter (``OTEL_EXPORTER_OTLP_ENDPOINT``), plus Litestar's Prometheus
middleware with grouped paths and its ``/metrics`` controller. No access log:
Litestar's stack has none by default.
"""

from __future__ import annotations

import sys

import uvicorn
from litestar import Litestar, get


@get("/hello", sync_to_thread=False)
def hello() -> str:
    return "hello, world"


def build(variant: str) -> Litestar:
    if variant == "plain":
        return Litestar(route_handlers=[hello], logging_config=None)
    if variant == "instrumented":
        from telemetry import TelemetryConfig, TelemetryPlugin

        plugin = TelemetryPlugin(TelemetryConfig(service_name="bench", instrument_asyncpg=False))
        return Litestar(route_handlers=[hello], plugins=[plugin], logging_config=None)
    if variant == "stock":
        return stock()
    raise SystemExit(f"unknown variant {variant!r}: expected plain, instrumented or stock")


def stock() -> Litestar:
    from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin
    from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    prometheus = PrometheusConfig(app_name="bench", group_path=True)
    return Litestar(
        route_handlers=[hello, PrometheusController],
        plugins=[OpenTelemetryPlugin(OpenTelemetryConfig(tracer_provider=provider))],
        middleware=[prometheus.middleware],
        logging_config=None,
    )


if __name__ == "__main__":
    variant, port = sys.argv[1], int(sys.argv[2])
    uvicorn.run(
        build(variant), host="127.0.0.1", port=port, log_config=None, access_log=False, workers=1
    )
