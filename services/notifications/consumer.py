"""The durable JetStream consumer that turns events into mail.

::

    fetch ≤ max_in_flight ──▶ process span (child of the PRODUCER span, from the headers)
        │                       ├─ parse (events.schema.json, version 1)
        │                       ├─ user.registered: remember the recipient, welcome mail
        │                       └─ order.*: claim by event id ──▶ SMTP ──▶ mark sent
        ├─ ok ─────────────────▶ ack
        ├─ failed, delivery < N ▶ nak with backoff (base × 2^(delivery-1), capped)
        └─ failed, delivery = N ▶ publish to deadletter.notifications, term

* Exactly-once *effect*: the ``notifications`` row keyed by the event id is
  claimed before the mail goes out; a redelivery (a crash before the ack, a
  re-published event) finds it ``sent`` and only acks. A crash between the
  SMTP server's "250" and ``mark sent`` re-sends with the same Message-ID: the
  one window left, which mail systems close by that header.
* Bounded in-flight: at most ``max_in_flight`` messages are fetched and
  processed at once, and JetStream holds ``max_ack_pending`` to the same bound.
* An order event whose user is not known yet (its ``user.registered`` is still
  in accounts' outbox) is retried like any failure.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from services.chassis import Database
from services.events.bus import DEADLETTER_PREFIX, EVENTS_PREFIX, EVENTS_STREAM, Bus
from services.events.metrics import trace_exemplar
from services.events.schema import OrderEvent, UserRegistered, validate_event
from services.notifications import store
from services.notifications.mailer import Mailer
from services.notifications.metrics import (
    CONSUMER_ACK_PENDING,
    CONSUMER_PENDING,
    CONSUMER_REDELIVERED,
    DEAD_LETTERS,
    EVENTS_PROCESSED,
    NOTIFICATION_DELAY,
)
from telemetry import get_logger

_log = get_logger("notifications.consumer")
_tracer = trace.get_tracer("services.notifications.consumer")

DURABLE = "notifications"


class UnknownRecipient(RuntimeError):
    """The user's user.registered has not arrived yet."""


def backoff(delivered: int, base: float, cap: float) -> float:
    """Delay before redelivery ``delivered + 1``: base, 2×base, 4×base ... capped."""
    return float(min(cap, base * 2 ** max(0, delivered - 1)))


class Consumer:
    def __init__(
        self,
        db: Database,
        bus: Bus,
        mailer: Mailer,
        *,
        max_in_flight: int = 32,
        max_deliveries: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        ack_wait: float = 30.0,
        stats_interval: float = 5.0,
    ) -> None:
        self.db = db
        self.bus = bus
        self.mailer = mailer
        self.max_in_flight = max_in_flight
        self.max_deliveries = max_deliveries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.ack_wait = ack_wait
        self.stats_interval = stats_interval

    def config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=DURABLE,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            # Deliveries past N happen only when a process died holding the
            # message every time; the consumer dead-letters those unopened.
            max_deliver=self.max_deliveries + 2,
            max_ack_pending=self.max_in_flight,
            filter_subject=EVENTS_PREFIX + ">",
        )

    async def run_forever(self) -> None:
        await self.db.ready.wait()
        js = await self.bus.wait()
        stats = asyncio.create_task(self._stats_forever(js))
        try:
            delay = 0.2
            while True:
                try:
                    sub = await js.pull_subscribe(
                        EVENTS_PREFIX + ">",
                        durable=DURABLE,
                        stream=EVENTS_STREAM,
                        config=self.config(),
                    )
                    break
                except Exception as exc:
                    _log.warning("consumer not created, retrying", error=repr(exc))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
            _log.info("consuming", stream=EVENTS_STREAM, durable=DURABLE)
            while True:
                try:
                    msgs = await sub.fetch(self.max_in_flight, timeout=1)
                except nats.errors.TimeoutError:
                    continue
                except Exception as exc:  # NATS gone for now: the client reconnects
                    _log.warning("fetch failed", error=repr(exc))
                    await asyncio.sleep(0.5)
                    continue
                async with asyncio.TaskGroup() as group:
                    for m in msgs:
                        group.create_task(self._handle_safely(m))
        finally:
            stats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stats

    async def _stats_forever(self, js: JetStreamContext) -> None:
        while True:
            with contextlib.suppress(Exception):
                info = await js.consumer_info(EVENTS_STREAM, DURABLE)
                CONSUMER_PENDING.set(info.num_pending or 0)
                CONSUMER_ACK_PENDING.set(info.num_ack_pending or 0)
                CONSUMER_REDELIVERED.set(info.num_redelivered or 0)
            await asyncio.sleep(self.stats_interval)

    async def _handle_safely(self, msg: Msg) -> None:
        """One message; an ack, nak or dead-letter publish that fails (NATS gone
        mid-batch) leaves the message to be redelivered, and the batch goes on."""
        try:
            await self.handle(msg)
        except Exception as exc:
            _log.warning("message left for redelivery", subject=msg.subject, error=repr(exc))

    async def handle(self, msg: Msg) -> None:
        headers = msg.headers or {}
        delivered = msg.metadata.num_delivered or 1
        event_type = msg.subject.removeprefix(EVENTS_PREFIX)
        with _tracer.start_as_current_span(
            f"process {msg.subject}",
            context=propagate.extract(headers),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "nats",
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": msg.subject,
                "messaging.consumer.group.name": DURABLE,
                "messaging.message.id": headers.get("Nats-Msg-Id", ""),
                "messaging.nats.message.delivery_count": delivered,
                "messaging.nats.stream.sequence": msg.metadata.sequence.stream,
            },
        ) as span:
            try:
                if delivered > self.max_deliveries:
                    raise RuntimeError(f"delivered {delivered} times without a verdict")
                outcome = await self.process(validate_event(msg.data))
            except Exception as exc:
                span.record_exception(exc)
                span.set_attribute("error.type", type(exc).__name__)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                await self._failed(msg, event_type, delivered, exc)
                return
            span.set_attribute("notifications.outcome", outcome)
            await msg.ack()
            EVENTS_PROCESSED.labels(event_type, outcome).inc()

    async def _failed(self, msg: Msg, event_type: str, delivered: int, exc: Exception) -> None:
        if delivered < self.max_deliveries:
            delay = backoff(delivered, self.backoff_base, self.backoff_cap)
            _log.warning(
                "event failed, will retry",
                subject=msg.subject,
                delivered=delivered,
                retry_in=delay,
                error=repr(exc),
            )
            await msg.nak(delay=delay)
            EVENTS_PROCESSED.labels(event_type, "retried").inc()
            return
        headers = dict(msg.headers or {})
        headers.update(
            {
                "Redline-Original-Subject": msg.subject,
                "Redline-Deliveries": str(delivered),
                "Redline-Error": repr(exc)[:500],
            }
        )
        await self.bus.js.publish(DEADLETTER_PREFIX + DURABLE, msg.data, headers=headers, timeout=5)
        await msg.term()
        DEAD_LETTERS.inc()
        EVENTS_PROCESSED.labels(event_type, "dead_lettered").inc()
        _log.error(
            "event dead-lettered",
            subject=msg.subject,
            delivered=delivered,
            error=repr(exc),
            message_id=headers.get("Nats-Msg-Id", ""),
        )

    async def process(self, event: OrderEvent | UserRegistered) -> str:
        if isinstance(event, UserRegistered):
            user = event.data
            await store.upsert_recipient(
                self.db, user.user_id, user.email, user.name, event.occurred_at
            )
            return await self._notify(
                event,
                user_id=user.user_id,
                order_id=None,
                to=user.email,
                subject="Welcome to Redline",
                body=f"Hello {user.name},\n\nyour account is ready.\n",
            )
        order = event.data
        found = await store.recipient(self.db, order.user_id)
        if found is None:
            raise UnknownRecipient(f"user {order.user_id} not known yet")
        email, name = found
        total = f"{order.total_cents / 100:.2f} {order.currency}"
        if order.status == "confirmed":
            subject = f"Order {order.order_id} confirmed"
            body = f"Hello {name},\n\nyour order of {total} is confirmed.\n"
        else:
            subject = f"Order {order.order_id} cancelled"
            body = (
                f"Hello {name},\n\nyour order of {total} was cancelled ({order.reason}); "
                "nothing was charged.\n"
            )
        return await self._notify(
            event,
            user_id=order.user_id,
            order_id=order.order_id,
            to=email,
            subject=subject,
            body=body,
        )

    async def _notify(
        self, event: Any, *, user_id: Any, order_id: Any, to: str, subject: str, body: str
    ) -> str:
        status = await store.claim(
            self.db,
            event_id=event.id,
            event_type=event.type,
            user_id=user_id,
            order_id=order_id,
            recipient=to,
            subject=subject,
            occurred_at=event.occurred_at,
        )
        if status == "sent":
            return "duplicate"
        await self.mailer.send(message_id=str(event.id), to=to, subject=subject, body=body)
        await store.mark_sent(self.db, event.id)
        NOTIFICATION_DELAY.observe(
            max(0.0, (datetime.now(UTC) - event.occurred_at).total_seconds()), trace_exemplar()
        )
        return "sent"
