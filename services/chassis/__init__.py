"""The chassis every Redline service is built on.

``create_app`` builds the Litestar app, ``run`` reads settings from the
environment and serves it. A service module holds only its routes, domain
logic and SQL.
"""

import sys
from collections.abc import Callable
from typing import Any, TypeVar

from services.chassis.app import ServiceContext, create_app, database_name
from services.chassis.config import (
    EXIT_CONFIG_ERROR,
    Port,
    ServiceSettings,
    TokenSettings,
    load_settings,
)
from services.chassis.db import Database
from services.chassis.errors import DatabaseUnavailable, ProblemError, ServiceUnavailable
from services.chassis.server import serve
from telemetry import ConfigError

S = TypeVar("S", bound=ServiceSettings)


def run(build: Callable[[S], Any], settings_cls: type[S]) -> None:
    """Entry point of ``python -m services.<name>``: settings, app, serve."""
    settings = load_settings(settings_cls)
    try:
        app = build(settings)
    except ConfigError as exc:  # a bad OTEL_* variable
        print(f"config error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG_ERROR) from None
    serve(app, settings)


__all__ = [
    "Database",
    "DatabaseUnavailable",
    "Port",
    "ProblemError",
    "ServiceContext",
    "ServiceSettings",
    "ServiceUnavailable",
    "TokenSettings",
    "create_app",
    "database_name",
    "load_settings",
    "run",
    "serve",
]
