"""The notifications service's metrics: consumer health, dead letters, end-to-end delay."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from telemetry import REGISTRY

CONSUMER_PENDING = Gauge(
    "notifications_consumer_pending_messages",
    "Messages in the stream the durable consumer has not been delivered yet (JetStream).",
    registry=REGISTRY,
)
CONSUMER_ACK_PENDING = Gauge(
    "notifications_consumer_ack_pending_messages",
    "Messages delivered to the consumer and not acknowledged yet (JetStream).",
    registry=REGISTRY,
)
CONSUMER_REDELIVERED = Gauge(
    "notifications_consumer_redelivered_messages",
    "Messages JetStream has delivered more than once and are not acknowledged yet.",
    registry=REGISTRY,
)
EVENTS_PROCESSED = Counter(
    "notifications_events_processed",
    "Events the consumer finished with, by type and outcome "
    "(sent, duplicate, recorded, dead_lettered, retried).",
    ["event_type", "outcome"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "notifications_dead_letters",
    "Events given up on after the maximum number of deliveries, published to deadletter.*.",
    registry=REGISTRY,
)
MAIL_DELIVERY_DURATION = Histogram(
    "notifications_mail_send_duration_seconds",
    "One SMTP delivery to the mail server.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
NOTIFICATION_DELAY = Histogram(
    "notifications_delivery_delay_seconds",
    "From the event's commit (its occurred_at) to the mail accepted by the SMTP server.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    registry=REGISTRY,
)
