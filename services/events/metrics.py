"""Outbox and relay metrics (the process's own registry, scraped at /metrics)."""

from __future__ import annotations

from opentelemetry import trace
from prometheus_client import Counter, Gauge, Histogram

from telemetry import REGISTRY

OUTBOX_BACKLOG = Gauge(
    "outbox_backlog_events",
    "Events written to this service's outbox and not yet published to NATS.",
    registry=REGISTRY,
)
OUTBOX_OLDEST_AGE = Gauge(
    "outbox_oldest_unsent_age_seconds",
    "Age of the oldest unpublished outbox event (0 when the outbox is drained).",
    registry=REGISTRY,
)
OUTBOX_PUBLISHED = Counter(
    "outbox_events_published",
    "Outbox events published to JetStream, by event type; duplicate=true when the broker "
    "had it already (a re-publish after a relay died before marking it sent).",
    ["event_type", "duplicate"],
    registry=REGISTRY,
)
OUTBOX_PUBLISH_FAILURES = Counter(
    "outbox_publish_failures",
    "Relay rounds that could not publish (NATS unreachable or refusing).",
    registry=REGISTRY,
)
OUTBOX_PUBLISH_DURATION = Histogram(
    "outbox_publish_duration_seconds",
    "One JetStream publish, until the broker's acknowledgement.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)


def trace_exemplar() -> dict[str, str] | None:
    """The current sampled span as a histogram exemplar (Grafana links it to the trace)."""
    ctx = trace.get_current_span().get_span_context()
    if not (ctx.is_valid and ctx.trace_flags.sampled):
        return None
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}
