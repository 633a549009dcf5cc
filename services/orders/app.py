"""The orders service: orders and the saga that completes or compensates them."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from litestar import Litestar
from pydantic import Field

from services.chassis import Port, ServiceContext, ServiceSettings, create_app, load_settings, run
from services.events.wiring import outbox_hooks
from services.orders.routes import OrdersController, SagaAdminController
from services.orders.saga import Saga
from services.orders.service import OrderService
from telemetry import INSTANCE_ID

MIGRATIONS = Path(__file__).parent / "migrations"


class OrdersSettings(ServiceSettings):
    port: Port = 8003
    # A saga holds its order this long between steps; recovery takes over after.
    saga_lease_seconds: float = Field(default=15.0, ge=1, le=600)
    saga_recovery_interval_seconds: float = Field(default=2.0, gt=0, le=60)
    # Where the outbox relay publishes order.confirmed / order.cancelled.
    nats_servers: str = "nats://127.0.0.1:4222"
    outbox_poll_seconds: float = Field(default=0.5, gt=0, le=60)


def build(settings: OrdersSettings) -> Litestar:
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
        service = OrderService(db=ctx.db, inventory=ctx.downstreams["inventory"], saga=saga)
        ctx.extras["orders"] = service
        ctx.extras["recovery"] = asyncio.create_task(
            service.recover_forever(settings.saga_recovery_interval_seconds)
        )

    async def shutdown(ctx: ServiceContext) -> None:
        task = ctx.extras.get("recovery")
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        ctx.extras["orders"].saga.pauses.clear()  # paused sagas finish before we exit

    return create_app(
        "orders",
        route_handlers=[OrdersController, SagaAdminController],
        settings=settings,
        migrations_dir=MIGRATIONS,
        on_startup=[startup, outbox_startup],
        on_shutdown=[shutdown, outbox_shutdown],
        description="Orders, placed idempotently, completed by a saga over inventory and payments.",
    )


def create() -> Litestar:
    return build(load_settings(OrdersSettings))


def main() -> None:
    run(build, OrdersSettings)
