"""Database telemetry: query spans, query-duration histogram, pool gauges.

Spans: one CLIENT span per statement, named and attributed by the stable
database semantic conventions: ``{db.operation.name} {db.collection.name}``
("SELECT products", "INSERT orders"), or ``{db.operation.name}
{db.stored_procedure.name}`` for a function read from as a table ("SELECT
reserve_stock"), with ``db.system.name``,
``db.namespace``, ``db.operation.name``, ``db.collection.name``,
``db.query.text`` (the statement as written: parameters travel separately as
``$n`` and are never recorded) and ``server.address``/``server.port``; a
failed statement adds ``error.type`` (the exception's class) and
``db.response.status_code`` (PostgreSQL's SQLSTATE).
Transaction control (``BEGIN``, ``COMMIT``, ``ROLLBACK``, savepoints) makes
no span of its own: a ``ROLLBACK`` is an event on the surrounding span, and
``REDLINE_DB_TRANSACTION_SPANS=true`` brings the spans back for debugging.
One order used to carry ~70 spans, a third of them ``BEGIN;``/``COMMIT;``.

opentelemetry-instrumentation-asyncpg names a span by the statement's first
word only ("SELECT") and spans every ``BEGIN;``; it is not used. The wrapper
below parses each distinct statement once (the services' SQL is constant
text), so a statement's name and attributes are one dictionary lookup. The
span itself is made as the server spans are (``telemetry/_server_span.py``:
the SDK's decision and ids, a span without its locks and copies) whenever
that is exactly the SDK's span, and by the SDK's ``start_span`` otherwise;
tests/test_db_spans.py checks the two export the same spans.

Durations come from asyncpg's own query logger, which times every statement
on the connection, so the histogram does not depend on the sampling decision.
Pool gauges are read from the pool at scrape time.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import Metric
from prometheus_client.core import GaugeMetricFamily

from telemetry._metrics import DB_OPERATION_DURATION, register_callback_collector

# The Connection methods that run a statement; asyncpg's transactions send their
# BEGIN/COMMIT/ROLLBACK through ``execute`` too.
_METHODS = ("execute", "executemany", "fetch", "fetchval", "fetchrow", "fetchmany")
TRANSACTION_CONTROL = frozenset(
    {"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE"}
)
# The first table a statement names: after INTO, UPDATE or TABLE, or after FROM
# or JOIN unless it is a function call (``extract(epoch FROM min(created_at))``).
_NAME = r'(?:"[^"]+"|[A-Za-z_][\w$]*)(?:\.(?:"[^"]+"|[A-Za-z_][\w$]*))*'
_COLLECTION = re.compile(
    rf"\b(?:INTO|UPDATE|TABLE)\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?({_NAME})|\b(?:FROM|JOIN)\s+({_NAME})(?![\w$.]|\s*\()",
    re.IGNORECASE,
)
# A function read from as a table, with no parenthesis before it, or a CALL.
_PROCEDURE = re.compile(
    rf"SELECT\s[^()]*?\bFROM\s+({_NAME})\s*\(|CALL\s+({_NAME})\s*\(", re.IGNORECASE
)
_COMMENT = re.compile(r"^\s*/\*.*?\*/", re.DOTALL)
_NOT_A_TABLE = frozenset({"SELECT", "LATERAL", "ONLY", "SET", "SKIP", "NOWAIT", "OF"})
_originals: dict[str, Callable[..., Awaitable[Any]]] = {}
TRACER_NAME = "telemetry.db"


class Statement:
    """What a statement's span carries, computed once per distinct query text."""

    __slots__ = ("attributes", "control", "name", "operation")

    def __init__(self, query: str) -> None:
        text = _COMMENT.sub("", query).strip()
        self.operation = operation_name(text)
        self.control = self.operation in TRANSACTION_CONTROL
        collection = None if self.control else collection_name(text, self.operation)
        procedure = None if self.control or collection else stored_procedure_name(text)
        target = collection or procedure
        self.name = f"{self.operation} {target}" if target else self.operation
        self.attributes: dict[str, str] = {
            "db.system.name": "postgresql",
            "db.operation.name": self.operation,
            "db.query.text": query,
        }
        if collection:
            self.attributes["db.collection.name"] = collection
        if procedure:
            self.attributes["db.stored_procedure.name"] = procedure


def collection_name(query: str, operation: str) -> str | None:
    """The first table the statement names, as written (schema prefix included)."""
    if operation == "WITH":
        # The CTE's own name is not a table; its body's first one is.
        body = query.find("(")
        query = query[body:] if body >= 0 else query
    for match in _COLLECTION.finditer(query):
        name = match.group(1) or match.group(2)
        if name.upper() not in _NOT_A_TABLE:
            return name
    return None


def stored_procedure_name(query: str) -> str | None:
    """The function a statement calls and reads nothing else from, as written.

    ``SELECT status FROM reserve_stock($1, $2)`` reads the row a function
    returns as another statement reads a table's, so the function is the
    span's target, as ``db.stored_procedure.name`` (``CALL`` likewise). A
    function inside an expression (``SELECT pg_advisory_lock($1)``,
    ``SELECT extract(epoch FROM now())``) is not a target: the span stays
    ``SELECT``.
    """
    match = _PROCEDURE.match(query)
    return (match.group(1) or match.group(2)) if match else None


def instrument_asyncpg(tracer_provider: Any, *, sdk_spans: bool = False) -> None:
    """Patch asyncpg's ``Connection`` once per process to emit a CLIENT span per statement.

    ``sdk_spans``: have the SDK's ``start_span`` make every span, as it did
    before the lighter spans (benchmarks/db_spans.py and the tests compare).
    """
    if _originals:
        return
    import asyncpg.connection

    from telemetry._server_span import ServerSpan, ServerSpans, _root_bound

    tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
    # The SDK's spans without their costs when that is exactly equivalent.
    spans = None if sdk_spans else ServerSpans.for_tracer(tracer, TRACER_NAME)
    get_current_context = otel_context.get_current
    debug = os.environ.get("REDLINE_DB_TRANSACTION_SPANS", "").lower() in {"1", "true", "yes"}
    statements: dict[str, Statement] = {}
    connection_attributes: dict[tuple[Any, Any], dict[str, Any]] = {}
    get_current_span = trace.get_current_span
    client = SpanKind.CLIENT
    # With a parent-based sampler (the default delegates), a child of an
    # unsampled span is never sampled: skip making the non-recording span.
    parent_decides = _root_bound(getattr(tracer_provider, "sampler", None)) is not None

    def attributes_for(conn: Any, statement: Statement) -> dict[str, Any]:
        params, addr = getattr(conn, "_params", None), getattr(conn, "_addr", None)
        key = (getattr(params, "database", None), addr)
        extra = connection_attributes.get(key)
        if extra is None:
            extra = {}
            if key[0]:
                extra["db.namespace"] = key[0]
            if isinstance(addr, tuple):
                extra["server.address"], extra["server.port"] = addr[0], addr[1]
            elif isinstance(addr, str):
                extra["server.address"] = addr
            connection_attributes[key] = extra
        return {**statement.attributes, **extra}

    def wrap(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(method)
        async def traced(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
            statement = statements.get(query)
            if statement is None:
                statement = statements[query] = Statement(query)
            if statement.control and not debug:
                if statement.operation == "ROLLBACK" and is_instrumentation_enabled():
                    get_current_span().add_event(
                        "db.transaction.rollback", {"db.query.text": query}
                    )
                return await method(self, query, *args, **kwargs)
            if not is_instrumentation_enabled():
                return await method(self, query, *args, **kwargs)
            if parent_decides:
                parent = get_current_span().get_span_context()
                if parent.is_valid and not parent.trace_flags.sampled:
                    return await method(self, query, *args, **kwargs)
            span: trace.Span
            if spans is not None:
                current = get_current_context()
                span = spans.span(statement.name, current, client)
                if isinstance(span, ServerSpan):
                    span.start(attributes_for(self, statement), current)
            else:
                span = tracer.start_span(
                    statement.name, kind=client, attributes=attributes_for(self, statement)
                )
            try:
                return await method(self, query, *args, **kwargs)
            except BaseException as exc:
                if span.is_recording() and isinstance(exc, Exception):
                    span.set_attribute("error.type", type(exc).__qualname__)
                    sqlstate = getattr(exc, "sqlstate", None)
                    if isinstance(sqlstate, str):  # PostgreSQL's error code
                        span.set_attribute("db.response.status_code", sqlstate)
                    span.set_status(Status(StatusCode.ERROR))
                raise
            finally:
                span.end()

        return traced

    for name in _METHODS:
        original = getattr(asyncpg.connection.Connection, name)
        _originals[name] = original
        setattr(asyncpg.connection.Connection, name, wrap(original))


def uninstrument_asyncpg() -> None:
    """Undo ``instrument_asyncpg`` (tests)."""
    import asyncpg.connection

    for name, original in _originals.items():
        setattr(asyncpg.connection.Connection, name, original)
    _originals.clear()


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
