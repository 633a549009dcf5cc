"""Which services exist, on which default port, calling which others.

The one place the platform's shape is written down: ``redline up``, the
Prometheus scrape config, docker-compose and the tests read it from here.
"""

from __future__ import annotations

from dataclasses import dataclass

# Each service's ops listener is on its public port plus this (gateway 8100, ...).
OPS_PORT_OFFSET = 100
# Replica k (2, 3, ...) of a service listens on its port plus (k - 1) times this
# by default (inventory 8002, inventory-2 8012, ...): below every ops port.
REPLICA_PORT_STEP = 10
MAX_REPLICAS = 9


@dataclass(frozen=True)
class ServiceInfo:
    name: str
    port: int
    calls: tuple[str, ...] = ()
    has_database: bool = True
    summary: str = ""
    # Talks to NATS JetStream: publishes its outbox (services/events) or consumes.
    uses_nats: bool = False

    @property
    def ops_port(self) -> int:
        """The operators' listener (``/admin``): loopback by default, never the public port."""
        return self.port + OPS_PORT_OFFSET

    @property
    def ops_name(self) -> str:
        """The ops listener's name where ports are listed by name (``redline up --port``)."""
        return f"{self.name}-ops"

    def instance_names(self, replicas: int = 1) -> list[str]:
        """``inventory``, ``inventory-2``, ...: the first instance keeps the service's name."""
        return [self.name, *(f"{self.name}-{k}" for k in range(2, replicas + 1))]

    @property
    def url_variable(self) -> str:
        """The variable other services read this one's base URL from."""
        return f"REDLINE_{self.name.upper()}_URL"


SERVICES: dict[str, ServiceInfo] = {
    s.name: s
    for s in (
        ServiceInfo(
            "gateway",
            8000,
            calls=("accounts", "inventory", "orders", "notifications"),
            has_database=False,
            summary="public API: auth, rate limits, timeouts, routing",
        ),
        ServiceInfo(
            "accounts", 8001, summary="users, passwords, JWT access tokens", uses_nats=True
        ),
        ServiceInfo("inventory", 8002, summary="catalog and stock reservations"),
        ServiceInfo(
            "orders",
            8003,
            calls=("inventory", "payments"),
            summary="orders and the order saga",
            uses_nats=True,
        ),
        ServiceInfo("payments", 8004, summary="charges and refunds (simulated card processor)"),
        ServiceInfo(
            "notifications",
            8005,
            summary="mail for order and account events (from NATS)",
            uses_nats=True,
        ),
    )
}


def instance_of(component: str) -> tuple[str, int] | None:
    """``inventory-2`` -> ("inventory", 2); ``inventory`` -> ("inventory", 1); else None."""
    if component in SERVICES:
        return component, 1
    name, _, k = component.rpartition("-")
    if name in SERVICES and k.isdigit() and 2 <= int(k) <= MAX_REPLICAS:
        return name, int(k)
    return None


def start_order() -> list[str]:
    """Every service after the services it calls."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        for dep in SERVICES[name].calls:
            visit(dep)
        order.append(name)

    for name in SERVICES:
        visit(name)
    return order


def start_waves() -> list[list[str]]:
    """The services in waves: each calls only services of earlier waves.

    A wave's services start side by side once the waves before it are ready
    (on 2 cores a stack is ready ~10 s sooner than starting one at a time).
    Within a wave, the order of :func:`start_order`.
    """
    level: dict[str, int] = {}
    for name in start_order():  # callees first, so their levels are known
        level[name] = 1 + max((level[dep] for dep in SERVICES[name].calls), default=-1)
    waves: list[list[str]] = [[] for _ in range(max(level.values()) + 1)]
    for name in start_order():
        waves[level[name]].append(name)
    return waves
