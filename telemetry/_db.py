"""Database telemetry: query spans, query-duration histogram, pool gauges.

Spans come from opentelemetry-instrumentation-asyncpg (stable database
semantic conventions). Durations come from asyncpg's own query logger, which
times every statement on the connection, so the histogram does not depend on
the sampling decision. Pool gauges are read from the pool at scrape time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import trace
from prometheus_client import Metric
from prometheus_client.core import GaugeMetricFamily

from telemetry._metrics import DB_OPERATION_DURATION, register_callback_collector

_instrumented = False


def instrument_asyncpg(tracer_provider: Any) -> None:
    """Patch asyncpg once per process to emit CLIENT spans per statement."""
    global _instrumented
    if _instrumented:
        return
    # Stable names (db.system.name, db.query.text, db.namespace) instead of the
    # pre-1.26 ones, unless an operator chose otherwise.
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "database")
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    AsyncPGInstrumentor().instrument(tracer_provider=tracer_provider)  # type: ignore[no-untyped-call]
    _instrumented = True


def operation_name(query: str) -> str:
    """The statement's first keyword, upper-cased: SELECT, INSERT, WITH, ..."""
    for token in query.lstrip().split(None, 1)[:1]:
        word = token.strip("(;").upper()
        if word.isalpha() and len(word) <= 16:
            return word
    return "OTHER"


def query_logger(db_namespace: str) -> Callable[[Any], None]:
    """An asyncpg query-logger callback feeding ``db_client_operation_duration_seconds``."""
    children: dict[tuple[str, str], Any] = {}

    def record(logged: Any) -> None:
        op = operation_name(logged.query or "")
        error = type(logged.exception).__name__ if logged.exception is not None else ""
        key = (op, error)
        child = children.get(key)
        if child is None:
            child = DB_OPERATION_DURATION.labels("postgresql", db_namespace, op, error)
            children[key] = child
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid and ctx.trace_flags.sampled:
            child.observe(
                logged.elapsed,
                {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")},
            )
        else:
            child.observe(logged.elapsed)

    return record


def register_pool_collector(pool_name: str, stats: Callable[[], tuple[int, int, int, int]]) -> None:
    """Gauges from ``stats() -> (used, idle, max, pending)``, read at scrape time."""

    def collect() -> Iterable[Metric]:
        used, idle, max_size, pending = stats()
        count = GaugeMetricFamily(
            "db_client_connections_usage",
            "Connections in the pool, by state (used or idle).",
            labels=["pool_name", "state"],
        )
        count.add_metric([pool_name, "used"], used)
        count.add_metric([pool_name, "idle"], idle)
        yield count
        yield _single(
            "db_client_connections_max",
            "The most connections the pool may open.",
            pool_name,
            max_size,
        )
        yield _single(
            "db_client_connections_pending_requests",
            "Callers waiting for a connection from the pool.",
            pool_name,
            pending,
        )

    register_callback_collector(collect)


def _single(name: str, doc: str, pool_name: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=["pool_name"])
    family.add_metric([pool_name], value)
    return family
