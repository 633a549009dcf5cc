"""Start-up and shutdown hooks that give a service its bus and outbox relay."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from services.chassis import ServiceContext
from services.events.bus import Bus
from services.events.outbox import OutboxRelay
from telemetry import HealthCheck


def bus_for(ctx: ServiceContext, url: str) -> Bus:
    """The service's NATS connection, made once; a non-critical health check.

    NATS down degrades a service, it does not make it unready: orders keep
    confirming into the outbox, which drains when NATS is back.
    """
    bus: Bus | None = ctx.extras.get("bus")
    if bus is None:
        bus = Bus(url, name=f"redline-{ctx.name}")
        ctx.extras["bus"] = bus
        ctx.telemetry.health.add_check(HealthCheck("nats", bus.ping, critical=False))
        bus.start()
    return bus


def outbox_hooks(
    nats_servers: str, *, poll_interval: float = 0.5
) -> tuple[
    Callable[[ServiceContext], Awaitable[None]], Callable[[ServiceContext], Awaitable[None]]
]:
    """(startup, shutdown) for a service whose store writes to an outbox."""

    async def startup(ctx: ServiceContext) -> None:
        assert ctx.db is not None
        relay = OutboxRelay(ctx.db, bus_for(ctx, nats_servers), poll_interval=poll_interval)
        ctx.extras["outbox_relay"] = asyncio.create_task(relay.run_forever())

    async def shutdown(ctx: ServiceContext) -> None:
        task = ctx.extras.pop("outbox_relay", None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        bus: Bus | None = ctx.extras.pop("bus", None)
        if bus is not None:
            await bus.close()

    return startup, shutdown
