"""Twelve-factor configuration: every setting from the environment, checked at start-up.

A bad value stops the process with one line naming the variable, never a
traceback: ``config error: REDLINE_PORT='abc': Input should be a valid integer``.
"""

from __future__ import annotations

import sys
from typing import Annotated, Literal, Self, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.chassis.auth import DEV_SECRET
from services.topology import OPS_PORT_OFFSET

EXIT_CONFIG_ERROR = 2

# Where a missing or weak secret is tolerated (REDLINE_ENVIRONMENT); anything
# else ("docker", "staging", "production", ...) is a deployment.
DEVELOPMENT_ENVIRONMENTS = frozenset({"dev", "development"})
# HS256 wants a key at least as long as its hash (RFC 7518 section 3.2).
MIN_JWT_SECRET_LENGTH = 32
# Secrets published in this repository, now or before: never good enough for a deployment.
PUBLIC_JWT_SECRETS = frozenset(
    {
        DEV_SECRET,
        "redline-docker-dev-secret-change-me",
    }
)

# Services override the default port; the alias keeps the range check when they do.
Port = Annotated[int, Field(ge=0, le=65535)]


class ServiceSettings(BaseSettings):
    """Settings every service shares. Services subclass it to add their own."""

    model_config = SettingsConfigDict(env_prefix="REDLINE_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: Port = 8000
    # "dev"/"development" tolerate development defaults; any other value refuses them.
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
    # The operators' listener (/admin): its own address, loopback unless an
    # operator says otherwise; its port defaults to the public one plus 100.
    ops_host: str = "127.0.0.1"
    ops_port: Port | None = None
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

    @model_validator(mode="after")
    def _ops_port_apart(self) -> Self:
        if self.port != 0 and self.ops_listen_port == self.port:
            raise ValueError(
                f"REDLINE_OPS_PORT={self.ops_listen_port} is the public port: the admin API "
                "must not be reachable where the public API is"
            )
        if self.ops_listen_port > 65535:
            raise ValueError(
                f"REDLINE_PORT={self.port}: the ops port defaults to it plus {OPS_PORT_OFFSET}, "
                "above 65535; set REDLINE_OPS_PORT"
            )
        return self

    @property
    def ops_listen_port(self) -> int:
        if self.ops_port is not None:
            return self.ops_port
        return self.port + OPS_PORT_OFFSET if self.port else 0

    @property
    def development(self) -> bool:
        return self.environment.lower() in DEVELOPMENT_ENVIRONMENTS

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql:// or postgres://")
        return value


class TokenSettings(ServiceSettings):
    """Settings of a service that signs or verifies access tokens (accounts, gateway, orders).

    Outside development the service refuses to start without a strong secret of
    its own: a public default would let anyone mint a token for any user.
    """

    jwt_secret: SecretStr | None = None

    @model_validator(mode="after")
    def _strong_jwt_secret(self) -> Self:
        if self.development:
            return self
        where = f"REDLINE_ENVIRONMENT={self.environment!r} is not development"
        secret = self.jwt_secret.get_secret_value() if self.jwt_secret is not None else ""
        if not secret:
            problem = "is unset"
        elif secret in PUBLIC_JWT_SECRETS:
            problem = "is a published development default"
        elif len(secret) < MIN_JWT_SECRET_LENGTH:
            problem = f"is shorter than {MIN_JWT_SECRET_LENGTH} characters"
        else:
            return self
        raise ValueError(
            f"REDLINE_JWT_SECRET {problem} ({where}); set it to a random secret of "
            f"{MIN_JWT_SECRET_LENGTH}+ characters, e.g. `openssl rand -base64 48`"
        )


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
