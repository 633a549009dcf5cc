"""The orders service: orders and the saga that completes or compensates them."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path

from litestar import Litestar
from litestar.di import Provide
from pydantic import Field

from services.chassis import Port, ServiceContext, TokenSettings, create_app, load_settings, run
from services.events.wiring import outbox_hooks
from services.orders.catalog import Catalog
from services.orders.routes import OrdersController, SagaAdminController
from services.orders.saga import Saga
from services.orders.service import OrderService
from telemetry import INSTANCE_ID

MIGRATIONS = Path(__file__).parent / "migrations"


class OrdersSettings(TokenSettings):
    port: Port = 8003
    # A saga holds its order this long between steps; recovery takes over after.
    saga_lease_seconds: float = Field(default=15.0, ge=1, le=600)
    saga_recovery_interval_seconds: float = Field(default=2.0, gt=0, le=60)
    # Where the outbox relay publishes order.confirmed / order.cancelled.
    nats_servers: str = "nats://127.0.0.1:4222"
    outbox_poll_seconds: float = Field(default=0.5, gt=0, le=60)
    # How long a product's catalog price is reused; inventory refuses a stale
    # one at reservation (services/orders/catalog.py). 0: read it every order.
    catalog_cache_seconds: float = Field(default=60.0, ge=0, le=3600)


@dataclass
class Running:
    """What the orders service starts once the database and its dependencies are up."""

    orders: OrderService | None = None
    recovery: asyncio.Task[None] | None = None

    def provide_orders(self) -> OrderService:
        if self.orders is None:
            raise RuntimeError("the orders service has not started")
        return self.orders


def build(settings: OrdersSettings) -> Litestar:
    running = Running()
    outbox_startup, outbox_shutdown = outbox_hooks(
        settings.nats_servers, poll_interval=settings.outbox_poll_seconds
    )

    async def startup(ctx: ServiceContext) -> None:
        assert ctx.db is not None
        saga = Saga(
            db=ctx.db,
            inventory=ctx.downstreams["inventory"],
            payments=ctx.downstreams["payments"],
            owner=INSTANCE_ID,
            lease_seconds=settings.saga_lease_seconds,
        )
        catalog = Catalog(ctx.downstreams["inventory"], ttl=settings.catalog_cache_seconds)
        service = OrderService(db=ctx.db, catalog=catalog, saga=saga)
        running.orders = service
        running.recovery = asyncio.create_task(
            service.recover_forever(settings.saga_recovery_interval_seconds)
        )

    async def shutdown(ctx: ServiceContext) -> None:
        if running.recovery is not None:
            running.recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running.recovery
        if running.orders is not None:
            running.orders.saga.pauses.clear()  # paused sagas finish before we exit

    return create_app(
        "orders",
        route_handlers=[OrdersController],
        ops_handlers=[SagaAdminController],
        settings=settings,
        migrations_dir=MIGRATIONS,
        on_startup=[startup, outbox_startup],
        on_shutdown=[shutdown, outbox_shutdown],
        dependencies={"orders": Provide(running.provide_orders, sync_to_thread=False)},
        description="Orders, placed idempotently, completed by a saga over inventory and payments.",
    )


def create() -> Litestar:
    return build(load_settings(OrdersSettings))


def main() -> None:
    run(build, OrdersSettings)
