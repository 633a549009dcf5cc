"""Twelve-factor configuration: every setting from the environment, checked at start-up.

A bad value stops the process with one line naming the variable, never a
traceback: ``config error: REDLINE_PORT='abc': Input should be a valid integer``.
"""

from __future__ import annotations

import sys
from typing import Annotated, Literal, Self, TypeVar

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

EXIT_CONFIG_ERROR = 2

# Services override the default port; the alias keeps the range check when they do.
Port = Annotated[int, Field(ge=0, le=65535)]


class ServiceSettings(BaseSettings):
    """Settings every service shares. Services subclass it to add their own."""

    model_config = SettingsConfigDict(env_prefix="REDLINE_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: Port = 8000
    environment: str = "dev"
    version: str = "0.1.0"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # Parent-based trace-id ratio for root spans (when OTEL_TRACES_SAMPLER is unset).
    trace_sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)

    # DATABASE_URL is the conventional name; no prefix.
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    db_pool_min_size: int = Field(default=1, ge=0)
    db_pool_max_size: int = Field(default=10, ge=1)
    db_statement_timeout_seconds: float = Field(default=5.0, gt=0)
    # Where the embedded PostgreSQL keeps its data when DATABASE_URL is unset.
    embedded_pg_dir: str = ".redline/pgdata"
    embedded_pg_port: int = Field(default=54329, ge=1, le=65535)

    # On SIGTERM: report not-ready for this long while still serving, so load
    # balancers stop sending traffic before the listener closes.
    drain_seconds: float = Field(default=0.0, ge=0)
    # Then wait at most this long for in-flight requests before cancelling them.
    graceful_timeout_seconds: float = Field(default=20.0, gt=0)
    # Bearer token for /admin endpoints; admin endpoints refuse all calls when unset.
    admin_token: str | None = None
    # Largest request body accepted, in bytes.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)

    @model_validator(mode="after")
    def _pool_bounds(self) -> Self:
        if self.db_pool_min_size > self.db_pool_max_size:
            raise ValueError(
                f"REDLINE_DB_POOL_MIN_SIZE={self.db_pool_min_size} is above "
                f"REDLINE_DB_POOL_MAX_SIZE={self.db_pool_max_size}"
            )
        return self

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql:// or postgres://")
        return value


S = TypeVar("S", bound=BaseSettings)


def format_error(settings_cls: type[BaseSettings], exc: ValidationError) -> str:
    """One line per bad variable, naming it as the operator wrote it."""
    prefix = settings_cls.model_config.get("env_prefix", "")
    parts = []
    for err in exc.errors():
        message = str(err["msg"]).removeprefix("Value error, ")
        if not err["loc"]:  # a check across fields names its variables itself
            parts.append(message)
            continue
        field = str(err["loc"][0])
        info = settings_cls.model_fields.get(field)
        alias = info.validation_alias if info is not None else None
        name = alias if isinstance(alias, str) else f"{prefix}{field}".upper()
        value = err.get("input")
        shown = f"={value!r}" if isinstance(value, str | int | float) else ""
        parts.append(f"{name}{shown}: {message}")
    return "; ".join(parts)


def load_settings(settings_cls: type[S]) -> S:
    """Read and validate settings; on error print one line to stderr and exit 2."""
    try:
        return settings_cls()
    except ValidationError as exc:
        print(f"config error: {format_error(settings_cls, exc)}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG_ERROR) from None
