"""Tracer provider set-up from the standard ``OTEL_*`` environment variables.

What the SDK reads by itself is left to it (``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_SERVICE_NAME``, ``OTEL_TRACES_SAMPLER[_ARG]``, ``OTEL_BSP_*``,
``OTEL_EXPORTER_OTLP_[TRACES_]{ENDPOINT,HEADERS,TIMEOUT,COMPRESSION}``,
``OTEL_PROPAGATORS``). This module adds the pieces a hand-built provider does not
get for free: the exporter choice (``OTEL_TRACES_EXPORTER``), the protocol choice
(``OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL``) and ``OTEL_SDK_DISABLED``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)

INSTANCE_ID = str(uuid.uuid4())


class ConfigError(ValueError):
    """An ``OTEL_*`` variable holds a value this library cannot use."""


@dataclass(frozen=True)
class TracingSettings:
    service_name: str
    service_version: str = "0.0.0"
    environment: str = "dev"
    # Used only when OTEL_TRACES_SAMPLER is not set: parent-based trace-id ratio.
    sample_ratio: float = 1.0


def build_resource(settings: TracingSettings, env: Mapping[str, str] | None = None) -> Resource:
    """Our defaults, overridden by what ``OTEL_RESOURCE_ATTRIBUTES``/``OTEL_SERVICE_NAME`` say."""
    defaults = Resource.create(
        {
            "service.name": settings.service_name,
            "service.namespace": "redline",
            "service.version": settings.service_version,
            "service.instance.id": INSTANCE_ID,
            "deployment.environment": settings.environment,
            "deployment.environment.name": settings.environment,
        }
    )
    # Resource.create lets code override the environment; operators expect the reverse.
    from_env = OTELResourceDetector().detect()
    return defaults.merge(from_env)


def build_sampler(settings: TracingSettings, env: Mapping[str, str]) -> Sampler | None:
    """None lets the SDK read OTEL_TRACES_SAMPLER itself."""
    if env.get("OTEL_TRACES_SAMPLER"):
        return None
    if not 0.0 <= settings.sample_ratio <= 1.0:
        raise ConfigError(f"sample ratio must be within [0, 1], got {settings.sample_ratio}")
    return ParentBased(TraceIdRatioBased(settings.sample_ratio))


def build_exporter(env: Mapping[str, str]) -> SpanExporter | None:
    """The exporter OTEL_TRACES_EXPORTER names; None for ``none``."""
    names = [n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip()]
    if not names or names == ["none"]:
        return None
    if len(names) > 1:
        raise ConfigError(f"OTEL_TRACES_EXPORTER: one exporter is supported, got {names}")
    name = names[0]
    if name == "console":
        return ConsoleSpanExporter()
    if name != "otlp":
        raise ConfigError(f"OTEL_TRACES_EXPORTER={name!r}: expected otlp, console or none")
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol == "http/protobuf":
        from telemetry._otlp import FastOTLPSpanExporter

        return FastOTLPSpanExporter()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter()
    raise ConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: expected http/protobuf or grpc")


def build_processor(exporter: SpanExporter, env: Mapping[str, str]) -> SpanProcessor:
    """Our OTLP/HTTP exporter's spans are encoded where they end (telemetry/_span_batches.py);
    any other exporter, or ``REDLINE_SPAN_PROCESSOR=sdk``, gets the SDK's batch processor."""
    from telemetry._otlp import FastOTLPSpanExporter

    choice = env.get("REDLINE_SPAN_PROCESSOR", "encoding").strip().lower()
    if choice not in ("encoding", "sdk"):
        raise ConfigError(f"REDLINE_SPAN_PROCESSOR={choice!r}: expected encoding or sdk")
    if isinstance(exporter, FastOTLPSpanExporter) and choice == "encoding":
        from telemetry._span_batches import EncodingSpanProcessor

        return EncodingSpanProcessor.from_env(exporter, env)
    return BatchSpanProcessor(exporter)


def configure_tracing(
    settings: TracingSettings,
    env: Mapping[str, str] | None = None,
    extra_processors: tuple[SpanProcessor, ...] = (),
) -> TracerProvider:
    """Build the provider and make it global. Call once per process."""
    env = os.environ if env is None else env
    disabled = env.get("OTEL_SDK_DISABLED", "false").strip().lower() == "true"
    provider = TracerProvider(
        resource=build_resource(settings, env),
        sampler=build_sampler(settings, env),
    )
    if not disabled:
        exporter = build_exporter(env)
        if exporter is not None:
            provider.add_span_processor(build_processor(exporter, env))
    for processor in extra_processors:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    return provider
