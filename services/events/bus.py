"""The connection to NATS and the streams every service agrees on.

Two streams, file-backed: ``EVENTS`` (``events.<type>``, e.g.
``events.order.confirmed``) keeps what the outboxes publish, with a duplicate
window long enough for a relay that died after publishing and before marking
its rows sent to publish them again harmlessly; ``DEADLETTER``
(``deadletter.<consumer>``) keeps what a consumer gave up on, for an operator.
Whoever connects first creates them; creating them again is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import BadRequestError

from telemetry import get_logger

_log = get_logger("events.bus")

EVENTS_STREAM = "EVENTS"
DEADLETTER_STREAM = "DEADLETTER"
EVENTS_PREFIX = "events."
DEADLETTER_PREFIX = "deadletter."
# A relay re-publishing a row it could not mark sent does so within seconds;
# two minutes (JetStream's default) covers a database outage of that length.
DUPLICATE_WINDOW_SECONDS = 120.0


def event_subject(event_type: str) -> str:
    return EVENTS_PREFIX + event_type


STREAMS = (
    StreamConfig(
        name=EVENTS_STREAM,
        subjects=[EVENTS_PREFIX + ">"],
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        max_age=7 * 24 * 3600.0,
    ),
    StreamConfig(
        name=DEADLETTER_STREAM,
        subjects=[DEADLETTER_PREFIX + ">"],
        storage=StorageType.FILE,
        max_age=30 * 24 * 3600.0,
    ),
)


class Bus:
    """One NATS connection, connecting (and reconnecting) in the background.

    A service starts and serves without NATS: ``connected`` tells whether it is
    there now (a non-critical health check), ``wait`` blocks a relay or a
    consumer until it is.
    """

    def __init__(self, url: str, *, name: str) -> None:
        self.url = url
        self.name = name
        self.nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise ConnectionError("not connected to NATS")
        return self._js

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    def start(self) -> None:
        self._task = asyncio.create_task(self._connect_forever())

    async def wait(self) -> JetStreamContext:
        await self._ready.wait()
        return self.js

    async def _connect_forever(self) -> None:
        delay = 0.2
        while True:
            try:
                nc = await nats.connect(
                    self.url,
                    name=self.name,
                    connect_timeout=2,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                )
                js = nc.jetstream(timeout=5)
                for config in STREAMS:
                    await _ensure_stream(js, config)
            except Exception as exc:  # NATS not there yet: keep trying
                _log.warning("NATS not reachable, retrying", url=self.url, error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.nc, self._js = nc, js
            self._ready.set()
            _log.info("NATS connected", url=self.url)
            return

    async def _on_error(self, exc: Exception) -> None:
        _log.warning("NATS error", error=repr(exc))

    async def _on_disconnected(self) -> None:
        _log.warning("NATS disconnected")

    async def _on_reconnected(self) -> None:
        _log.info("NATS reconnected")

    async def ping(self) -> None:
        if not self.connected:
            raise ConnectionError("not connected to NATS")

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.nc is not None:
            # close, not drain: every publish was awaited to its ack, and a
            # message fetched but not acked is redelivered after the ack wait.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), timeout=2)
            self.nc = None


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> Any:
    try:
        return await js.add_stream(config)
    except BadRequestError:
        # Exists with another configuration (an older release): bring it up to date.
        return await js.update_stream(config)
