"""The gateway: the platform's only public entry point."""

from __future__ import annotations

from litestar import Litestar
from litestar.di import Provide
from pydantic import Field, field_validator

from services.chassis import Port, TokenSettings, create_app, load_settings, run
from services.chassis.edge import EdgePolicy, parse_networks
from services.chassis.http_client import DependencyConfig
from services.gateway.notifications import NOTIFICATIONS_DOWNSTREAM, NotificationRoutes
from services.gateway.ratelimit import RateLimiter
from services.gateway.routes import (
    AUTH_TIMEOUT,
    CATALOG_TIMEOUT,
    ORDERS_TIMEOUT,
    SECURITY_SCHEMES,
    AuthRoutes,
    CatalogRoutes,
    Limits,
    OrderRoutes,
)

# A call may use its route's whole budget: the deadline, not a shorter client
# timeout, decides when the gateway gives up (and answers 504).
DOWNSTREAMS = {
    "accounts": DependencyConfig(name="accounts", base_url="", timeout=AUTH_TIMEOUT),
    "inventory": DependencyConfig(name="inventory", base_url="", timeout=CATALOG_TIMEOUT),
    "orders": DependencyConfig(name="orders", base_url="", timeout=ORDERS_TIMEOUT),
    "notifications": NOTIFICATIONS_DOWNSTREAM,
}


class GatewaySettings(TokenSettings):
    port: Port = 8000
    # Signed-in users, per user; anonymous routes, per client IP.
    rate_limit_user_per_second: float = Field(default=50.0, gt=0)
    rate_limit_user_burst: int = Field(default=100, ge=1)
    rate_limit_ip_per_second: float = Field(default=200.0, gt=0)
    rate_limit_ip_burst: int = Field(default=400, ge=1)
    # Sign-ins and sign-ups (each an Argon2 hash and a password guess), per
    # client network (an IPv4 address, an IPv6 /64) and per account (e-mail).
    credential_network_per_minute: float = Field(default=60.0, gt=0)
    credential_network_burst: int = Field(default=30, ge=1)
    credential_account_per_minute: float = Field(default=10.0, gt=0)
    credential_account_burst: int = Field(default=5, ge=1)
    # Comma-separated addresses or networks. Peers whose X-Forwarded-For is
    # believed (a load balancer in front); none by default.
    trusted_proxies: str = ""
    # Clients whose traceparent/baggage are continued (a load generator, a
    # trusted internal caller); none by default: everyone else starts a new
    # trace linked to theirs.
    trace_trusted_clients: str = ""

    @field_validator("trusted_proxies", "trace_trusted_clients")
    @classmethod
    def _networks(cls, value: str) -> str:
        parse_networks(value)
        return value

    @property
    def edge(self) -> EdgePolicy:
        return EdgePolicy(
            trusted_proxies=parse_networks(self.trusted_proxies),
            trace_trusted_clients=parse_networks(self.trace_trusted_clients),
        )


def build(settings: GatewaySettings) -> Litestar:
    edge = settings.edge
    limits = Limits(
        edge=edge,
        user=RateLimiter(settings.rate_limit_user_per_second, settings.rate_limit_user_burst),
        ip=RateLimiter(settings.rate_limit_ip_per_second, settings.rate_limit_ip_burst),
        network=RateLimiter(
            settings.credential_network_per_minute / 60, settings.credential_network_burst
        ),
        account=RateLimiter(
            settings.credential_account_per_minute / 60, settings.credential_account_burst
        ),
    )

    def provide_limits() -> Limits:
        return limits

    app = create_app(
        "gateway",
        route_handlers=[AuthRoutes, CatalogRoutes, OrderRoutes, NotificationRoutes],
        settings=settings,
        downstream_overrides=DOWNSTREAMS,
        edge=edge,
        security_schemes=SECURITY_SCHEMES,
        dependencies={"limits": Provide(provide_limits, sync_to_thread=False)},
        description="Redline's public API: sign-up and sign-in, the catalog, and orders.",
    )
    # For the guards: Litestar injects dependencies into handlers only.
    app.state.limits = limits
    return app


def create() -> Litestar:
    return build(load_settings(GatewaySettings))


def main() -> None:
    run(build, GatewaySettings)
