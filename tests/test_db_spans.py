"""Database spans as a developer reads them: named by the stable conventions, no BEGIN/COMMIT.

The naming is checked on the services' own statements; the spans on a real
PostgreSQL (embedded), through the services' ``Database`` and asyncpg's own
transactions, with the SDK's in-memory exporter.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable, Iterator

import asyncpg
import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind

from services.chassis.db import Database
from services.inventory import store
from services.inventory.app import MIGRATIONS
from services.inventory.models import ReserveLine
from telemetry import _db
from telemetry._db import Statement
from telemetry._server_span import ServerSpan


@pytest.mark.parametrize(
    ("query", "name", "collection"),
    [
        (
            "SELECT status FROM reservations WHERE order_id = $1 FOR UPDATE",
            "SELECT",
            "reservations",
        ),
        (
            "SELECT p.id, p.name FROM products p JOIN stock s ON s.product_id = p.id WHERE p.id = $1",
            "SELECT",
            "products",
        ),
        (
            "INSERT INTO saga_events (order_id, step, outcome) VALUES ($1, 'created', 'ok')",
            "INSERT",
            "saga_events",
        ),
        ("  update orders SET step = $2 WHERE id = $1", "UPDATE", "orders"),
        ("DELETE FROM idempotency_keys WHERE key = $1", "DELETE", "idempotency_keys"),
        (
            "SELECT count(*) AS n, extract(epoch FROM min(created_at)) AS oldest FROM outbox",
            "SELECT",
            "outbox",
        ),
        (
            "WITH moved AS (UPDATE stock SET sold = sold + 1 RETURNING 1) SELECT count(*) FROM moved",
            "WITH",
            "stock",
        ),
        ('SELECT * FROM public."Orders" WHERE id = $1', "SELECT", 'public."Orders"'),
        ("/* saga */ SELECT 1", "SELECT", None),
        ("SELECT pg_advisory_lock($1)", "SELECT", None),
        ('CREATE DATABASE "x"', "CREATE", None),
    ],
)
def test_a_statement_is_named_operation_then_first_table(
    query: str, name: str, collection: str | None
) -> None:
    statement = Statement(query)
    assert statement.operation == name
    assert statement.attributes.get("db.collection.name") == collection
    assert statement.name == (f"{name} {collection}" if collection else name)
    assert statement.attributes["db.query.text"] == query
    assert statement.attributes["db.system.name"] == "postgresql"
    assert not statement.control


@pytest.mark.parametrize(
    ("query", "name", "procedure"),
    [
        (
            "SELECT status, created, product_ids, quantities FROM reserve_stock($1, $2, $3)",
            "SELECT reserve_stock",
            "reserve_stock",
        ),
        (
            "SELECT * FROM inventory.commit_reservation($1)",
            "SELECT inventory.commit_reservation",
            "inventory.commit_reservation",
        ),
        ('select status from "Release"($1)', 'SELECT "Release"', '"Release"'),
        ("CALL settle($1, 'committed')", "CALL settle", "settle"),
        # A function inside an expression is no target; the span stays "SELECT".
        ("SELECT pg_advisory_lock($1)", "SELECT", None),
        ("SELECT extract(epoch FROM now())", "SELECT", None),
        # A table read beside a function is the target, as before.
        ("SELECT g FROM generate_series(1, 3) g JOIN stock s ON true", "SELECT stock", None),
    ],
)
def test_a_function_read_from_as_a_table_is_the_stored_procedure_target(
    query: str, name: str, procedure: str | None
) -> None:
    """The stable conventions' ``{target}`` for an operation on a stored procedure is
    ``db.stored_procedure.name``: ``SELECT reserve_stock``, not a bare ``SELECT``."""
    statement = Statement(query)
    assert statement.name == name
    assert statement.attributes.get("db.stored_procedure.name") == procedure
    if procedure:
        assert "db.collection.name" not in statement.attributes


@pytest.mark.parametrize(
    "query",
    [
        "BEGIN",
        "BEGIN ISOLATION LEVEL SERIALIZABLE",
        "COMMIT;",
        "ROLLBACK;",
        "SAVEPOINT sp_1;",
        "RELEASE SAVEPOINT sp_1;",
        "ROLLBACK TO sp_1;",
    ],
)
def test_transaction_control_is_recognised(query: str) -> None:
    assert Statement(query).control


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(1.0)))
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    _db.uninstrument_asyncpg()  # whatever another test's service instrumented with
    _db.instrument_asyncpg(provider)
    yield provider
    _db.uninstrument_asyncpg()


@pytest.fixture
def spans(provider: TracerProvider) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


async def _an_order_like_unit_of_work(dsn: str) -> None:
    db = Database(dsn, name="spans", min_size=1, max_size=1)
    await db.start(wait=True)
    try:
        await db.execute("CREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY, n int)")
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO items (id, n) VALUES ($1, $2)", 1, 1)
            await conn.executemany("INSERT INTO items (id, n) VALUES ($1, $2)", [(2, 2), (3, 3)])
            await conn.fetchrow("SELECT n FROM items WHERE id = $1", 1)
        with pytest.raises(asyncpg.UniqueViolationError):
            async with db.transaction() as conn:
                await conn.execute("INSERT INTO items (id, n) VALUES ($1, $2)", 1, 1)
        with suppress_instrumentation():
            await db.fetchval("SELECT count(*) FROM items")
    finally:
        await db.close()


def test_a_transaction_yields_statement_spans_and_no_begin_or_commit(
    new_database: Callable[[str], str], spans: InMemorySpanExporter
) -> None:
    dsn = new_database("dbspans")
    spans.clear()  # creating the database
    asyncio.run(_an_order_like_unit_of_work(dsn))
    names = [s.name for s in spans.get_finished_spans()]
    assert names == [
        "CREATE items",
        "INSERT items",
        "INSERT items",
        "SELECT items",
        "INSERT items",  # the failing one; its transaction's ROLLBACK is no span
    ]
    failed = spans.get_finished_spans()[-1]
    assert failed.kind is SpanKind.CLIENT
    assert failed.attributes is not None
    assert failed.attributes["error.type"] == "UniqueViolationError"
    assert failed.attributes["db.response.status_code"] == "23505"
    assert failed.status.is_ok is False
    select = spans.get_finished_spans()[3]
    attributes = dict(select.attributes or {})
    assert attributes.pop("server.address")
    assert isinstance(attributes.pop("server.port"), int)
    assert str(attributes.pop("db.namespace")).startswith("dbspans")
    assert attributes == {
        "db.system.name": "postgresql",
        "db.operation.name": "SELECT",
        "db.collection.name": "items",
        "db.query.text": "SELECT n FROM items WHERE id = $1",
    }


def test_each_reservation_call_is_one_round_trip_and_one_span(
    new_database: Callable[[str], str], spans: InMemorySpanExporter
) -> None:
    """Inventory's reserve, commit and release: one statement each (no BEGIN or
    COMMIT either), its span named for the function it calls. An out-of-stock line
    is an answer of that statement, not an error: its span is not marked failed
    (a sold-out product is business as usual), and it moved no stock."""
    dsn = new_database("inventory_spans")
    sent, moved = asyncio.run(_reserve_commit_release(dsn, spans))
    assert sent == {"reserve": 1, "commit": 1, "reserve again": 1, "release": 1, "refused": 1}
    assert moved == {"available": -2, "reserved": 0, "sold": 2}  # the committed order's
    by_call = [(s.name, dict(s.attributes or {})) for s in spans.get_finished_spans()]
    assert [name for name, _ in by_call] == [
        "SELECT reserve_stock",
        "SELECT commit_reservation",
        "SELECT reserve_stock",
        "SELECT release_reservation",
        "SELECT reserve_stock",
    ]
    for name, attributes in by_call:
        assert attributes["db.stored_procedure.name"] == name.removeprefix("SELECT ")
        assert attributes["db.operation.name"] == "SELECT"
        assert "db.collection.name" not in attributes
    refused = spans.get_finished_spans()[-1]
    assert refused.status.is_ok
    assert "error.type" not in (refused.attributes or {})


async def _reserve_commit_release(
    dsn: str, spans: InMemorySpanExporter
) -> tuple[dict[str, int], dict[str, int]]:
    db = Database(dsn, name="inventory", min_size=1, max_size=1, migrations_dir=MIGRATIONS)
    await db.start(wait=True)
    sent: dict[str, int] = {}
    step = ""

    def count(_: object) -> None:
        sent[step] = sent.get(step, 0) + 1

    stock = "SELECT available, reserved, sold FROM stock WHERE product_id = 4"
    lines = [ReserveLine(product_id=9, quantity=1), ReserveLine(product_id=4, quantity=2)]
    try:
        async with db.acquire() as conn:
            conn.add_query_logger(count)  # the pool's only connection
        # asyncpg looks up the array types once per connection (3 queries): not counted.
        await store.commit(db, (await store.reserve(db, uuid.uuid4(), lines))[0].order_id)
        with suppress_instrumentation():
            before = await db.fetchrow(stock)
        spans.clear()  # the migrations' and the first order's
        sent.clear()
        committed, released = uuid.uuid4(), uuid.uuid4()
        step = "reserve"
        await store.reserve(db, committed, lines)
        step = "commit"
        await store.commit(db, committed)
        step = "reserve again"
        await store.reserve(db, released, lines)
        step = "release"
        await store.release(db, released)
        step = "refused"
        too_many = [*lines, ReserveLine(product_id=5, quantity=1000)]
        with pytest.raises(store.OutOfStock):
            await store.reserve(db, uuid.uuid4(), too_many)
        step = "after"
        with suppress_instrumentation():
            after = await db.fetchrow(stock)
    finally:
        await db.close()
    sent.pop("after")
    assert before is not None
    assert after is not None
    return sent, {k: after[k] - before[k] for k in ("available", "reserved", "sold")}


def test_a_rollback_is_an_event_on_the_surrounding_span(
    new_database: Callable[[str], str], provider: TracerProvider, spans: InMemorySpanExporter
) -> None:
    tracer = provider.get_tracer("test")

    async def failing_step(db: Database) -> None:
        async with db.transaction() as conn:
            await conn.fetchval("SELECT 1")
            raise RuntimeError("step failed")

    async def work(dsn: str) -> None:
        db = Database(dsn, name="rollback", min_size=1, max_size=1)
        await db.start(wait=True)
        try:
            with tracer.start_as_current_span("saga step"), pytest.raises(RuntimeError):
                await failing_step(db)
        finally:
            await db.close()

    dsn = new_database("dbrollback")
    spans.clear()
    asyncio.run(work(dsn))
    step = next(s for s in spans.get_finished_spans() if s.name == "saga step")
    assert [e.name for e in step.events] == ["db.transaction.rollback"]
    assert [s.name for s in spans.get_finished_spans()] == ["SELECT", "saga step"]


def test_no_span_under_an_unsampled_parent(
    new_database: Callable[[str], str], provider: TracerProvider, spans: InMemorySpanExporter
) -> None:
    unsampled = trace.NonRecordingSpan(
        trace.SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=trace.TraceFlags(0))
    )

    async def work(dsn: str) -> None:
        db = Database(dsn, name="unsampled", min_size=1, max_size=1)
        await db.start(wait=True)
        try:
            with trace.use_span(unsampled):
                await db.fetchval("SELECT 1")
            await db.fetchval("SELECT 2")
        finally:
            await db.close()

    dsn = new_database("dbunsampled")
    spans.clear()
    asyncio.run(work(dsn))
    assert [s.name for s in spans.get_finished_spans()] == ["SELECT"]


def test_the_readiness_ping_is_not_traced(
    new_database: Callable[[str], str], spans: InMemorySpanExporter
) -> None:
    async def work(dsn: str) -> None:
        db = Database(dsn, name="ping", min_size=1, max_size=1)
        await db.start(wait=True)
        try:
            await db.ping()
            await db.fetchval("SELECT 1")
        finally:
            await db.close()

    dsn = new_database("dbping")
    spans.clear()
    asyncio.run(work(dsn))
    assert [s.name for s in spans.get_finished_spans()] == ["SELECT"]


def test_transaction_spans_come_back_at_the_debug_setting(
    new_database: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDLINE_DB_TRANSACTION_SPANS", "true")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    dsn = new_database("dbdebug")

    async def work() -> None:
        db = Database(dsn, name="debug", min_size=1, max_size=1)
        await db.start(wait=True)
        try:
            async with db.transaction() as conn:
                await conn.fetchval("SELECT 1")
        finally:
            await db.close()

    _db.uninstrument_asyncpg()
    _db.instrument_asyncpg(provider)
    try:
        asyncio.run(work())
    finally:
        _db.uninstrument_asyncpg()
    assert [s.name for s in exporter.get_finished_spans()] == ["BEGIN", "SELECT", "COMMIT"]


def _without_clock(spans: list[ReadableSpan]) -> ExportTraceServiceRequest:
    """The stock OTLP encoding with the clock readings, which two runs cannot share, zeroed."""
    message = encode_spans(spans)
    for resource_spans in message.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                span.start_time_unix_nano = span.end_time_unix_nano = 0
                for event in span.events:
                    event.time_unix_nano = 0
    return message


def test_the_lighter_spans_are_the_sdks(new_database: Callable[[str], str]) -> None:
    """From one seed, the SDK's ``start_span`` and ours export the same spans: names, kind,
    attributes, ids and parents, sampling of roots, error status, the ROLLBACK event."""
    dsn = new_database("dbequal")
    sampled_parent = trace.set_span_in_context(
        trace.NonRecordingSpan(
            trace.SpanContext(
                0x0AF7651916CD43DD8448EB211C80319C,
                0xB7AD6B7169203331,
                is_remote=True,
                trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
            )
        )
    )

    async def work(tracer: trace.Tracer) -> None:
        db = Database(dsn, name="equal", min_size=1, max_size=1)
        await db.start(wait=True)
        try:
            with suppress_instrumentation():
                await db.execute("DROP TABLE IF EXISTS items")
                await db.execute("CREATE TABLE items (id int PRIMARY KEY, n int)")
            random.seed(11)  # from here on, both runs draw the same ids
            with tracer.start_as_current_span("saga step", context=sampled_parent):
                async with db.transaction() as conn:
                    await conn.execute("INSERT INTO items (id, n) VALUES ($1, $2)", 1, 1)
                    await conn.executemany(
                        "INSERT INTO items (id, n) VALUES ($1, $2)", [(2, 2), (3, 3)]
                    )
                    await conn.fetchrow("SELECT n FROM items WHERE id = $1", 1)
                with pytest.raises(asyncpg.UniqueViolationError):
                    async with db.transaction() as conn:
                        await conn.execute("INSERT INTO items (id, n) VALUES ($1, $2)", 1, 1)
            for i in range(16):  # roots: the sampler's own decision, half of them
                await db.fetchval("SELECT n FROM items WHERE id = $1", i)
        finally:
            await db.close()

    exported: dict[bool, list[ReadableSpan]] = {}
    for sdk_spans in (True, False):
        exporter = InMemorySpanExporter()
        provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.5)))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        _db.uninstrument_asyncpg()
        _db.instrument_asyncpg(provider, sdk_spans=sdk_spans)
        try:
            asyncio.run(work(provider.get_tracer("test")))
        finally:
            _db.uninstrument_asyncpg()
        exported[sdk_spans] = list(exporter.get_finished_spans())
    sdk, ours = exported[True], exported[False]
    assert not any(isinstance(span, ServerSpan) for span in sdk)
    assert sum(isinstance(span, ServerSpan) for span in ours) == len(ours) - 1  # all but the step
    names = [span.name for span in ours]
    assert names[:5] == [
        "INSERT items",
        "INSERT items",
        "SELECT items",
        "INSERT items",
        "saga step",
    ]
    assert 0 < len(names[5:]) < 16, "roots: both sampling outcomes"
    assert ours[3].status.status_code is trace.StatusCode.ERROR
    assert [event.name for event in ours[4].events] == ["db.transaction.rollback"]
    assert _without_clock(ours) == _without_clock(sdk)
