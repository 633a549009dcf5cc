"""A service's NATS connection and the background task that uses it, started and stopped with it.

:class:`Events` holds both, typed, for the service's start-up and shutdown
hooks (as orders' ``Running`` holds its service): the outbox relay in orders
and accounts (:func:`outbox_hooks`), the consumer in notifications.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from services.chassis import ServiceContext
from services.events.bus import Bus
from services.events.outbox import OutboxRelay
from telemetry import HealthCheck

Hook = Callable[[ServiceContext], Awaitable[None]]


@dataclass
class Events:
    """What a service runs against NATS: its connection and one background task."""

    url: str
    bus: Bus | None = None
    task: asyncio.Task[None] | None = None

    def connect(self, ctx: ServiceContext) -> Bus:
        """The service's NATS connection, made once; a non-critical health check.

        NATS down degrades a service, it does not make it unready: orders keep
        confirming into the outbox, which drains when NATS is back.
        """
        if self.bus is None:
            self.bus = Bus(self.url, name=f"redline-{ctx.name}")
            ctx.telemetry.health.add_check(HealthCheck("nats", self.bus.ping, critical=False))
            self.bus.start()
        return self.bus

    def run(self, work: Coroutine[Any, Any, None]) -> None:
        self.task = asyncio.create_task(work)

    async def stop(self) -> None:
        """Cancel the task, then close the connection (what the task was using)."""
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        bus, self.bus = self.bus, None
        if bus is not None:
            await bus.close()


def outbox_hooks(nats_servers: str, *, poll_interval: float = 0.5) -> tuple[Hook, Hook]:
    """(startup, shutdown) for a service whose store writes to an outbox."""
    events = Events(nats_servers)

    async def startup(ctx: ServiceContext) -> None:
        assert ctx.db is not None
        relay = OutboxRelay(ctx.db, events.connect(ctx), poll_interval=poll_interval)
        events.run(relay.run_forever())

    async def shutdown(ctx: ServiceContext) -> None:
        await events.stop()

    return startup, shutdown
