"""The transactional outbox: write an event with the state change, publish it after.

``enqueue`` inserts the event into the ``outbox`` table on the caller's
connection, inside the caller's transaction: the event exists if and only if
the change committed. It keeps the W3C trace context of the span that made
the change, so the publish (a PRODUCER span) joins that trace however late it
happens.

``OutboxRelay`` publishes unsent rows, oldest first, and marks them sent::

    BEGIN; SELECT ... WHERE sent_at IS NULL ORDER BY seq LIMIT n FOR UPDATE SKIP LOCKED
           publish each to JetStream (Nats-Msg-Id = row id), await the broker's ack
           UPDATE outbox SET sent_at = now() WHERE id = ANY(published)
    COMMIT

Killed anywhere before COMMIT, the rows stay unsent and are published again
by the next round (this process after a restart, or another replica: the row
locks keep two relays off the same rows); the broker drops a re-publish of an
id it has seen inside its duplicate window. At-least-once to the broker,
exactly-once in the stream within the window; consumers still dedupe by event
id, which covers any window.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
from nats.js.api import PubAck
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import SpanKind, Status, StatusCode

from services.chassis import Database, ProblemError
from services.events.bus import Bus, event_subject
from services.events.metrics import (
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_AGE,
    OUTBOX_PUBLISH_DURATION,
    OUTBOX_PUBLISH_FAILURES,
    OUTBOX_PUBLISHED,
    trace_exemplar,
)
from services.events.schema import VERSION
from telemetry import get_logger

_log = get_logger("events.outbox")
_tracer = trace.get_tracer("services.events.outbox")

# Relays in this process, woken when a transaction with an event commits.
_wakers: set[asyncio.Event] = set()


def wake_relays() -> None:
    """Tell this process's relays an event was committed (else they poll)."""
    for event in _wakers:
        event.set()


def event_row(
    *, event_type: str, source: str, data: dict[str, Any]
) -> tuple[uuid.UUID, str, str, str]:
    """One event as the ``outbox`` row ``enqueue`` writes: (id, subject, payload, trace_context).

    For a caller that writes the row in a statement of its own (a data-modifying
    CTE that inserts it only if the change happened, in one round trip).
    """
    event_id = uuid.uuid4()
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    payload = {
        "id": str(event_id),
        "type": event_type,
        "version": VERSION,
        "occurred_at": datetime.now(UTC).isoformat(),
        "source": source,
        "data": data,
    }
    return (
        event_id,
        event_subject(event_type),
        json.dumps(payload, default=str, separators=(",", ":")),
        json.dumps(carrier),
    )


async def enqueue(
    conn: asyncpg.Connection, *, event_type: str, source: str, data: dict[str, Any]
) -> uuid.UUID:
    """Write one event on ``conn``, inside the caller's transaction. Returns its id."""
    row = event_row(event_type=event_type, source=source, data=data)
    await conn.execute(
        "INSERT INTO outbox (id, subject, payload, trace_context) VALUES ($1, $2, $3, $4::jsonb)",
        *row,
    )
    return row[0]


def publish_attributes(subject: str, message_id: str) -> dict[str, Any]:
    """OpenTelemetry messaging semantic conventions for a NATS publish."""
    return {
        "messaging.system": "nats",
        "messaging.operation.type": "publish",
        "messaging.operation.name": "publish",
        "messaging.destination.name": subject,
        "messaging.message.id": message_id,
    }


class OutboxRelay:
    def __init__(
        self,
        db: Database,
        bus: Bus,
        *,
        batch_size: int = 100,
        poll_interval: float = 0.5,
    ) -> None:
        self.db = db
        self.bus = bus
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self._wake = asyncio.Event()

    async def run_forever(self) -> None:
        await self.db.ready.wait()
        _wakers.add(self._wake)
        delay = self.poll_interval
        try:
            while True:
                self._wake.clear()
                failed = True
                try:
                    published = await self.relay_once()
                    failed = False
                    delay = self.poll_interval
                except (ConnectionError, TimeoutError, OSError, ProblemError) as exc:
                    OUTBOX_PUBLISH_FAILURES.inc()
                    _log.warning("outbox relay round failed", error=repr(exc), retry_in=delay)
                    published = 0
                except Exception as exc:
                    OUTBOX_PUBLISH_FAILURES.inc()
                    _log.error("outbox relay round failed", exc_info=exc, retry_in=delay)
                    published = 0
                await self._observe_backlog()
                if failed:
                    # Backing off: a commit does not cut the wait short (with the
                    # broker down, every order would otherwise cost a failed round,
                    # a backlog count and a warning line).
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                if published == self.batch_size:
                    continue  # more waiting: no pause
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
        finally:
            _wakers.discard(self._wake)

    async def relay_once(self) -> int:
        """Publish one batch of unsent events; the number published."""
        if not self.bus.connected:
            raise ConnectionError("not connected to NATS")
        js = self.bus.js
        published: list[uuid.UUID] = []
        async with self.db.transaction() as conn:
            with suppress_instrumentation():  # an idle poll is not worth a trace
                rows = await conn.fetch(
                    "SELECT id, subject, payload::text AS payload, trace_context "
                    "FROM outbox WHERE sent_at IS NULL ORDER BY seq "
                    "LIMIT $1 FOR UPDATE SKIP LOCKED",
                    self.batch_size,
                )
            if not rows:
                return 0
            failure: BaseException | None = None
            for row in rows:
                try:
                    await self._publish(js, row)
                except Exception as exc:
                    failure = exc
                    break
                published.append(row["id"])
            if published:
                with suppress_instrumentation():
                    await conn.execute(
                        "UPDATE outbox SET sent_at = now() WHERE id = ANY($1::uuid[])", published
                    )
        if failure is not None:
            raise failure
        return len(published)

    async def _publish(self, js: Any, row: asyncpg.Record) -> PubAck:
        subject: str = row["subject"]
        message_id = str(row["id"])
        carrier = json.loads(row["trace_context"] or "{}")
        parent = propagate.extract(carrier)
        with _tracer.start_as_current_span(
            f"publish {subject}",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes=publish_attributes(subject, message_id),
        ) as span:
            headers: dict[str, str] = {"Nats-Msg-Id": message_id}
            propagate.inject(headers)
            start = time.perf_counter()
            try:
                ack: PubAck = await js.publish(
                    subject, row["payload"].encode(), headers=headers, timeout=5
                )
            except Exception as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                span.set_attribute("error.type", type(exc).__name__)
                raise
            OUTBOX_PUBLISH_DURATION.observe(time.perf_counter() - start, trace_exemplar())
            duplicate = bool(ack.duplicate)
            span.set_attribute("messaging.nats.stream.sequence", ack.seq)
            span.set_attribute("messaging.nats.duplicate", duplicate)
            event_type = subject.removeprefix("events.")
            OUTBOX_PUBLISHED.labels(event_type, str(duplicate).lower()).inc()
            return ack

    async def _observe_backlog(self) -> None:
        try:
            with suppress_instrumentation():
                row = await self.db.fetchrow(
                    "SELECT count(*) AS n, extract(epoch FROM min(created_at)) AS oldest "
                    "FROM outbox WHERE sent_at IS NULL"
                )
        except ProblemError:
            return
        if row is not None:
            OUTBOX_BACKLOG.set(row["n"])
            _oldest_unsent[0] = None if row["oldest"] is None else float(row["oldest"])


# When the oldest unsent event was written (epoch seconds), as of the last round;
# its age is read at scrape time, so it grows with the clock while rounds stall.
_oldest_unsent: list[float | None] = [None]


def _oldest_age() -> float:
    oldest = _oldest_unsent[0]
    return 0.0 if oldest is None else max(0.0, time.time() - oldest)


OUTBOX_OLDEST_AGE.set_function(_oldest_age)
