"""Domain events: a transactional outbox, its relay to NATS JetStream, and the bus.

A service that announces a state change writes the event into its own
``outbox`` table in the same transaction as the change (``outbox.enqueue``);
a relay in the same process publishes unsent rows to JetStream with the row's
id as ``Nats-Msg-Id`` (the broker drops a re-publish inside its duplicate
window) and marks them sent. Consumers (the notifications service) read the
stream through a durable consumer. Payloads are versioned and described by
``events.schema.json`` beside this file.
"""

from services.events.bus import (
    DEADLETTER_STREAM,
    EVENTS_STREAM,
    Bus,
    event_subject,
)
from services.events.outbox import OutboxRelay, enqueue, event_row, wake_relays
from services.events.schema import SCHEMA_PATH, validate_event

__all__ = [
    "DEADLETTER_STREAM",
    "EVENTS_STREAM",
    "SCHEMA_PATH",
    "Bus",
    "OutboxRelay",
    "enqueue",
    "event_row",
    "event_subject",
    "validate_event",
    "wake_relays",
]
