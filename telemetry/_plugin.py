"""The Litestar plugin: one line in a service's plugin list instruments it."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from litestar import Request, Response, get
from litestar.config.app import AppConfig
from litestar.plugins import InitPluginProtocol
from prometheus_client import Gauge

from telemetry._logging import configure_logging, get_logger
from telemetry._metrics import REGISTRY, exposition
from telemetry._middleware import ContextTrust, TelemetryMiddleware
from telemetry._probes import Health
from telemetry._tracing import INSTANCE_ID, TracingSettings, configure_tracing

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.types import ASGIApp
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

LIVE_PATH = "/health/live"
READY_PATH = "/health/ready"
HEALTH_PATH = "/health"
METRICS_PATH = "/metrics"

EVENT_LOOP_LAG = Gauge(
    "python_asyncio_event_loop_lag_seconds",
    "How late the event loop ran a timer that was due, sampled twice a second.",
    registry=REGISTRY,
)

HEALTH_READY = Gauge(
    "health_ready",
    "1 when the service is ready to serve (started, not draining, critical checks pass).",
    registry=REGISTRY,
)
HEALTH_CHECK_PASSING = Gauge(
    "health_check_passing",
    "1 when the named health check passes, 0 when it fails.",
    ["check"],
    registry=REGISTRY,
)
# How often readiness is evaluated for the gauges above, probes or not.
HEALTH_INTERVAL_SECONDS = 2.0

_log = get_logger("telemetry")


@dataclass
class TelemetryConfig:
    service_name: str
    service_version: str = "0.0.0"
    environment: str = "dev"
    # Used when OTEL_TRACES_SAMPLER is unset: parent-based, this ratio for roots.
    sample_ratio: float = 1.0
    log_level: str = "INFO"
    health_cache_seconds: float = 1.0
    instrument_asyncpg: bool = True
    # Probe and scrape traffic is neither traced nor counted in RED.
    excluded_paths: frozenset[str] = field(
        default_factory=lambda: frozenset({LIVE_PATH, READY_PATH, HEALTH_PATH, METRICS_PATH})
    )
    extra_span_processors: tuple[SpanProcessor, ...] = ()
    # Whether a request's traceparent/tracestate/baggage may be continued; None:
    # always (a service behind the edge). A public edge trusts only its own
    # callers: the others start a new trace that links to theirs.
    trust_incoming_context: ContextTrust | None = None


class TelemetryPlugin(InitPluginProtocol):
    """Traces, RED metrics, JSON logs and probes for one Litestar app.

    Logging and tracing are configured when the plugin is built, so that even
    start-up failures are logged as JSON.
    """

    def __init__(self, config: TelemetryConfig) -> None:
        self.config = config
        self.health = Health(cache_seconds=config.health_cache_seconds)
        configure_logging(
            level=config.log_level,
            static_fields={
                "service": config.service_name,
                "service_version": config.service_version,
                "instance": INSTANCE_ID,
            },
        )
        self.tracer_provider: TracerProvider = configure_tracing(
            TracingSettings(
                service_name=config.service_name,
                service_version=config.service_version,
                environment=config.environment,
                sample_ratio=config.sample_ratio,
            ),
            extra_processors=config.extra_span_processors,
        )
        if config.instrument_asyncpg:
            from telemetry._db import instrument_asyncpg

            instrument_asyncpg(self.tracer_provider)
        self._lag_task: asyncio.Task[None] | None = None
        self._health_task: asyncio.Task[None] | None = None
        self._flushed = False
        self.event_loop_lag = 0.0

    # -- Litestar wiring -------------------------------------------------------------
    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.route_handlers = [*app_config.route_handlers, *self._route_handlers()]
        app_config.on_startup = [
            self._install_middleware,
            *app_config.on_startup,
            self._after_startup,
        ]
        # Last, so spans and log lines of the other shutdown hooks are flushed too.
        app_config.on_shutdown = [*app_config.on_shutdown, self.shutdown]
        return app_config

    def _install_middleware(self, app: Litestar) -> None:
        self.instrument(app)

    def instrument(self, app: Litestar) -> None:
        """Trace, count and log ``app``'s requests (done at start-up for the plugin's own app;
        call it for another app the service serves, such as its ops listener's)."""
        # Wrap the exception-handled router (where Litestar puts its own
        # OpenTelemetry middleware) so 404/405 and router errors are seen too.
        app.asgi_handler = cast(
            "ASGIApp",
            TelemetryMiddleware(
                app.asgi_handler,
                excluded_paths=self.config.excluded_paths,
                trust=self.config.trust_incoming_context,
            ),
        )

    async def _after_startup(self) -> None:
        self._lag_task = asyncio.create_task(self._watch_event_loop())
        self._health_task = asyncio.create_task(self._watch_health())
        # Objects made during start-up live for the whole process; freezing them
        # keeps the collector from rescanning them (15-18 ms full-GC pauses
        # measured with the OpenTelemetry SDK loaded, 0.5 ms after freezing).
        gc.collect()
        gc.freeze()

    async def _watch_event_loop(self) -> None:
        interval = 0.5
        while True:
            due = time.perf_counter() + interval
            await asyncio.sleep(interval)
            self.event_loop_lag = max(0.0, time.perf_counter() - due)
            EVENT_LOOP_LAG.set(self.event_loop_lag)

    async def _watch_health(self) -> None:
        """Keep health_ready and health_check_passing current between probes."""
        while True:
            try:
                report = await self.health.report()
            except Exception as exc:  # never let the watcher die silently
                _log.error("health evaluation failed", exc_info=exc)
            else:
                HEALTH_READY.set(1 if report.ready else 0)
                for check in report.checks:
                    HEALTH_CHECK_PASSING.labels(check.name).set(1 if check.ok else 0)
            await asyncio.sleep(HEALTH_INTERVAL_SECONDS)

    async def shutdown(self) -> None:
        """Stop background work and flush spans; safe to call twice."""
        HEALTH_READY.set(0)
        for task in (self._lag_task, self._health_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._lag_task = self._health_task = None
        if self._flushed:
            return
        self._flushed = True
        # The exporter blocks on network I/O; keep the event loop free.
        await asyncio.get_running_loop().run_in_executor(None, self.tracer_provider.shutdown)

    def _route_handlers(self) -> list[Any]:
        health = self.health
        plugin = self

        @get(METRICS_PATH, include_in_schema=False, sync_to_thread=False)
        def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
            body, content_type = exposition(request.headers.get("accept"))
            return Response(body, media_type=content_type)

        @get(LIVE_PATH, include_in_schema=False, sync_to_thread=False)
        def live() -> dict[str, Any]:
            return {"status": "alive", "event_loop_lag_seconds": plugin.event_loop_lag}

        @get(READY_PATH, include_in_schema=False)
        async def ready() -> Response[dict[str, Any]]:
            report = await health.report()
            body: dict[str, Any] = {"status": "ready" if report.ready else "not_ready"}
            if not report.ready:
                body["reasons"] = report.reasons()
            return Response(body, status_code=200 if report.ready else 503)

        @get(HEALTH_PATH, include_in_schema=False)
        async def health_detail() -> Response[dict[str, Any]]:
            report = await health.report()
            code = 503 if report.status == "unhealthy" else 200
            return Response(report.as_dict(), status_code=code)

        return [metrics, live, ready, health_detail]
