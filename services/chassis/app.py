"""The app factory every service calls: one way to build a Redline service.

A service module holds its routes, domain logic and SQL; this factory adds the
rest the same way for all of them: settings from the environment, telemetry,
the database pool and its migrations, problem+json errors, OpenAPI, probes,
and an orderly start-up and shutdown.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from litestar import Litestar
from litestar.di import Provide
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ControllerRouterHandler

from services.chassis.config import ServiceSettings
from services.chassis.db import Database, ensure_database
from services.chassis.deadlines import DeadlineMiddleware
from services.chassis.dependencies import dependency_configs
from services.chassis.edge import EdgePolicy
from services.chassis.errors import exception_handlers
from services.chassis.faults import FaultInjector, FaultMiddleware
from services.chassis.http_client import DependencyConfig, Downstream
from services.chassis.openapi import (
    ClosedStructSchemaPlugin,
    correct_allow_header,
    document_common_responses,
)
from services.chassis.ops import create_ops_app
from services.chassis.pgserver import EmbeddedPostgres
from telemetry import HealthCheck, TelemetryConfig, TelemetryPlugin, get_logger

_log = get_logger("chassis")

Hook = Callable[["ServiceContext"], Awaitable[None]]


@dataclass
class ServiceContext:
    """What a running service has: handed to its start-up/shutdown hooks and kept on app.state."""

    name: str
    settings: ServiceSettings
    telemetry: TelemetryPlugin
    db: Database | None = None
    faults: FaultInjector = field(default_factory=FaultInjector)
    # The services this one calls, by name, each behind the resilient client.
    downstreams: dict[str, Downstream] = field(default_factory=dict)


def database_name(service: str) -> str:
    return f"redline_{service}"


async def _resolve_dsn(name: str, settings: ServiceSettings) -> str:
    if settings.database_url:
        return settings.database_url
    server = EmbeddedPostgres(Path(settings.embedded_pg_dir), port=settings.embedded_pg_port)
    await asyncio.to_thread(server.ensure_running)
    await ensure_database(server.dsn(), database_name(name))
    _log.info("using embedded PostgreSQL", data_dir=str(server.data_dir), port=server.port)
    return server.dsn(database_name(name))


def create_app(
    name: str,
    *,
    route_handlers: Sequence[ControllerRouterHandler],
    settings: ServiceSettings,
    migrations_dir: Path | None = None,
    on_startup: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
    dependencies: dict[str, Provide] | None = None,
    downstream_overrides: Mapping[str, DependencyConfig] | None = None,
    description: str = "",
    ops_handlers: Sequence[ControllerRouterHandler] = (),
    edge: EdgePolicy | None = None,
    security_schemes: Mapping[str, SecurityScheme] | None = None,
) -> Litestar:
    """The service's public app; its ops app (``/admin``, services/chassis/ops.py) is
    ``app.state.ops_app``, served on the ops listener by ``serve``.

    ``edge``: this service faces the internet (the gateway); see services/chassis/edge.py.
    """
    telemetry = TelemetryPlugin(
        TelemetryConfig(
            service_name=name,
            service_version=settings.version,
            environment=settings.environment,
            sample_ratio=settings.trace_sample_ratio,
            log_level=settings.log_level,
            instrument_asyncpg=migrations_dir is not None,
            trust_incoming_context=edge.trusts_context if edge is not None else None,
        )
    )
    ctx = ServiceContext(name=name, settings=settings, telemetry=telemetry)
    downstream_configs = dependency_configs(name, os.environ, downstream_overrides)

    async def startup() -> None:
        if migrations_dir is not None:
            dsn = await _resolve_dsn(name, settings)
            ctx.db = Database(
                dsn,
                name=name,
                min_size=settings.db_pool_min_size,
                max_size=settings.db_pool_max_size,
                statement_timeout_seconds=settings.db_statement_timeout_seconds,
                migrations_dir=migrations_dir,
            )
            telemetry.health.add_check(HealthCheck("postgres", ctx.db.ping))
            await ctx.db.start()
        for dep_name, config in downstream_configs.items():
            ctx.downstreams[dep_name] = Downstream(config)
        for hook in on_startup:
            await hook(ctx)
        telemetry.health.mark_started()
        _log.info("service started", host=settings.host, port=settings.port)

    async def shutdown() -> None:
        telemetry.health.mark_draining()
        for hook in reversed(on_shutdown):
            try:
                await hook(ctx)
            except Exception as exc:  # one failing hook must not skip the rest
                _log.error("shutdown hook failed", exc_info=exc)
        for downstream in ctx.downstreams.values():
            await downstream.aclose()
        if ctx.db is not None:
            await ctx.db.close()
        _log.info("service stopped")  # the telemetry plugin flushes after this hook

    def provide_db() -> Database:
        if ctx.db is None:
            raise RuntimeError(f"service {name} has no database")
        return ctx.db

    # A service adds its own typed providers (``dependencies``); handlers
    # declare what they use by name and type, never by reaching into the context.
    deps: dict[str, Provide] = {
        "db": Provide(provide_db, sync_to_thread=False),
        **(dependencies or {}),
    }

    app = Litestar(
        route_handlers=route_handlers,
        # Outermost first: the deadline covers what the faults inject.
        middleware=[DeadlineMiddleware(trust_header=edge is None), FaultMiddleware(ctx.faults)],
        plugins=[telemetry, ClosedStructSchemaPlugin()],
        on_startup=[startup],
        on_shutdown=[shutdown],
        exception_handlers=exception_handlers(),
        before_send=[correct_allow_header],
        dependencies=deps,
        openapi_config=OpenAPIConfig(
            title=f"redline {name}",
            version=settings.version,
            description=description or None,
            path="/schema",
            components=Components(security_schemes=dict(security_schemes or {})),
        ),
        request_max_body_size=settings.max_body_bytes,
        debug=False,
        logging_config=None,  # the telemetry plugin owns logging
    )
    document_common_responses(app)
    app.state.ctx = ctx
    app.state.ops_app = create_ops_app(ctx, ops_handlers, dependencies=deps)
    return app
