"""The outbox and its relay against a real PostgreSQL and a real nats-server."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import jsonschema
import nats
import pytest

from services.chassis import Database
from services.events import (
    SCHEMA_PATH,
    Bus,
    OutboxRelay,
    enqueue,
    validate_event,
    wake_relays,
)
from services.events.bus import EVENTS_STREAM
from services.events.schema import OrderEvent, UserRegistered
from services.orders.app import MIGRATIONS as ORDERS_MIGRATIONS
from telemetry import REGISTRY
from tests.nats_server import NatsServer

SCHEMA = json.loads(SCHEMA_PATH.read_text())
ORDER_DATA = {
    "order_id": "6f1c1c5e-0d8e-4d8b-9a59-2f9b1f0e6a11",
    "user_id": "0b0e5a53-5a3c-4b0b-8d7c-4b8c5b5f2d10",
    "status": "confirmed",
    "reason": None,
    "total_cents": 1999,
    "currency": "USD",
}


@pytest.fixture
def dsn(new_database: Callable[[str], str]) -> str:
    return new_database("outbox")


@pytest.fixture
async def db(dsn: str) -> AsyncIterator[Database]:
    database = Database(dsn, name="outbox", migrations_dir=ORDERS_MIGRATIONS)
    await database.start(wait=True)
    yield database
    await database.close()


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[Bus]:
    b = Bus(nats_server.url, name="test")
    b.start()
    await b.wait()
    yield b
    await b.close()


async def stream_messages(url: str) -> int:
    nc = await nats.connect(url)
    try:
        return int((await nc.jetstream().stream_info(EVENTS_STREAM)).state.messages)
    finally:
        await nc.close()


async def test_an_event_rolled_back_with_its_transaction_is_never_published(
    db: Database, bus: Bus, nats_server: NatsServer
) -> None:
    before = await stream_messages(nats_server.url)

    async def change_that_fails() -> None:
        async with db.transaction() as conn:
            await enqueue(conn, event_type="order.confirmed", source="orders", data=ORDER_DATA)
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError, match="the change failed"):
        await change_that_fails()
    assert await OutboxRelay(db, bus).relay_once() == 0
    assert await stream_messages(nats_server.url) == before


async def test_a_republished_row_is_dropped_by_the_broker_as_a_duplicate(
    db: Database, bus: Bus, nats_server: NatsServer
) -> None:
    """The relay died after publishing and before marking the rows sent."""
    async with db.transaction() as conn:
        ids = [
            await enqueue(conn, event_type="order.confirmed", source="orders", data=ORDER_DATA)
            for _ in range(3)
        ]
    before = await stream_messages(nats_server.url)
    relay = OutboxRelay(db, bus)
    assert await relay.relay_once() == 3
    assert await stream_messages(nats_server.url) == before + 3
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 0

    await db.execute("UPDATE outbox SET sent_at = NULL WHERE id = ANY($1::uuid[])", ids)
    assert await relay.relay_once() == 3  # published again ...
    assert await stream_messages(nats_server.url) == before + 3  # ... and dropped by JetStream


async def test_rows_stay_unsent_while_nats_is_away(db: Database, nats_server: NatsServer) -> None:
    away = Bus("nats://127.0.0.1:1", name="nowhere")  # never connects
    async with db.transaction() as conn:
        await enqueue(conn, event_type="order.confirmed", source="orders", data=ORDER_DATA)
    with pytest.raises(ConnectionError):
        await OutboxRelay(db, away).relay_once()
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 1


def _failed_rounds() -> float:
    return REGISTRY.get_sample_value("outbox_publish_failures_total") or 0.0


async def test_commits_do_not_cut_the_relays_backoff_short_while_nats_is_away(
    db: Database,
) -> None:
    """With the broker down, each committed event wakes the relay; it keeps backing off.

    Before, every wake ran a failed round (a backlog count and a warning line):
    one per order for as long as NATS was away.
    """
    away = Bus("nats://127.0.0.1:1", name="nowhere")  # never connects
    relay = OutboxRelay(db, away, poll_interval=0.2)
    rounds = _failed_rounds()
    task = asyncio.create_task(relay.run_forever())
    try:
        for _ in range(40):  # 40 commits over ~0.4 s
            async with db.transaction() as conn:
                await enqueue(conn, event_type="order.confirmed", source="orders", data=ORDER_DATA)
            wake_relays()
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    failed_rounds = _failed_rounds() - rounds
    # Rounds at 0, 0.2 and 0.6 s (the delay doubles) fit in the ~0.4+ s, not 40.
    assert 1 <= failed_rounds <= 3, failed_rounds
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 40


async def test_outbox_payloads_follow_the_json_schema(db: Database) -> None:
    async with db.transaction() as conn:
        await enqueue(conn, event_type="order.confirmed", source="orders", data=ORDER_DATA)
        await enqueue(
            conn,
            event_type="order.cancelled",
            source="orders",
            data={**ORDER_DATA, "status": "cancelled", "reason": "payment_declined"},
        )
        await enqueue(
            conn,
            event_type="user.registered",
            source="accounts",
            data={"user_id": ORDER_DATA["user_id"], "email": "ada@example.com", "name": "Ada"},
        )
    rows = await db.fetch("SELECT payload::text AS p FROM outbox")
    validator = jsonschema.Draft202012Validator(
        SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    for row in rows:
        payload = json.loads(row["p"])
        validator.validate(payload)
        assert isinstance(validate_event(row["p"]), OrderEvent | UserRegistered)


def _invalid(event: dict[str, Any]) -> bool:
    return not jsonschema.Draft202012Validator(SCHEMA).is_valid(event)


def test_schema_and_models_refuse_the_same_malformed_events() -> None:
    good = {
        "id": "3c5a3f2e-4f0e-4d8c-9a3c-6b7d8e9f0a1b",
        "type": "order.confirmed",
        "version": 1,
        "occurred_at": "2026-12-05T22:00:00+00:00",
        "source": "orders",
        "data": ORDER_DATA,
    }
    assert not _invalid(good)
    validate_event(good)
    bad = [
        {**good, "version": 2},  # an unknown major version
        {**good, "type": "order.shipped"},
        {**good, "data": {**ORDER_DATA, "total_cents": -1}},
        {**good, "data": {k: v for k, v in ORDER_DATA.items() if k != "user_id"}},
        {**good, "extra": True},
        {**good, "type": "user.registered"},  # an order's data under a user event
    ]
    for event in bad:
        assert _invalid(event), event
        with pytest.raises(ValueError, match="validation error"):
            validate_event(event)


def test_schema_lists_exactly_the_event_types_the_models_know() -> None:
    in_schema = set(SCHEMA["properties"]["type"]["enum"])
    in_models: set[str] = set()
    for model in (OrderEvent, UserRegistered):
        in_models |= set(model.model_fields["type"].annotation.__args__)  # type: ignore[union-attr]
    assert in_schema == in_models
