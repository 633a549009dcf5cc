"""Inventory's reserve + commit: transactions of round trips vs one function call each.

One process, the services' ``Database`` (one pooled connection) on an
embedded PostgreSQL migrated as the inventory service migrates it, its
statements traced by ``telemetry._db`` and exported over OTLP/HTTP to
``otlp_sink.py``, as in the services. The unit of work is one order's
inventory calls: reserve (``--lines`` lines) then commit, under a sampled
parent span. Two variants take turns in interleaved rounds:

* transactions: the store as of main 410628a (copied below): reserve =
  BEGIN, INSERT reservations, an UPDATE stock per line, INSERT
  reservation_items (executemany), COMMIT; commit = BEGIN, UPDATE
  reservations, SELECT reservation_items, an UPDATE stock per line, COMMIT;
* functions: ``services/inventory/store.py`` (one ``SELECT ... FROM
  reserve_stock(...)``, one ``SELECT ... FROM commit_reservation(...)``).

The report gives, per order, the round trips (statements asyncpg sent, BEGIN
and COMMIT included), the DB spans, and the CPU of this process (all threads:
the exporter's too) and of the PostgreSQL server (all its processes, read
from /proc to the clock tick: count enough orders), medians of the rounds.

    .venv/bin/python benchmarks/inventory_roundtrips.py [--rounds 5] [--orders 1500] [--lines 2]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import psutil
from _report import cpu_seconds, otlp_env, otlp_sink

from services.chassis.db import Database, ensure_database
from services.inventory import store
from services.inventory.app import MIGRATIONS
from services.inventory.models import ReserveLine
from tests.conftest import throwaway_postgres

Variant = tuple[
    Callable[[Database, uuid.UUID, list[ReserveLine]], Awaitable[Any]],
    Callable[[Database, uuid.UUID], Awaitable[Any]],
]


# -- the store as of main 410628a: transactions of round trips (errors left out) --
async def old_reserve(db: Database, order_id: uuid.UUID, items: list[ReserveLine]) -> None:
    merged: dict[int, int] = {}
    for item in items:
        merged[item.product_id] = merged.get(item.product_id, 0) + item.quantity
    lines = sorted(merged.items())  # one line per product, in the lock order
    async with db.transaction() as conn:
        inserted = await conn.fetchval(
            "INSERT INTO reservations (order_id, status) VALUES ($1, 'reserved') "
            "ON CONFLICT (order_id) DO NOTHING RETURNING true",
            order_id,
        )
        assert inserted
        for product_id, quantity in lines:
            left = await conn.fetchval(
                "UPDATE stock SET available = available - $2, reserved = reserved + $2 "
                "WHERE product_id = $1 AND available >= $2 RETURNING available",
                product_id,
                quantity,
            )
            assert left is not None
        await conn.executemany(
            "INSERT INTO reservation_items (order_id, product_id, quantity) VALUES ($1, $2, $3)",
            [(order_id, pid, qty) for pid, qty in lines],
        )


async def old_commit(db: Database, order_id: uuid.UUID) -> None:
    async with db.transaction() as conn:
        settled = await conn.fetchval(
            "UPDATE reservations SET status = $2, updated_at = now() "
            "WHERE order_id = $1 AND status = 'reserved' RETURNING true",
            order_id,
            "committed",
        )
        assert settled
        rows = await conn.fetch(
            "SELECT product_id, quantity FROM reservation_items WHERE order_id = $1 "
            "ORDER BY product_id",
            order_id,
        )
        for row in rows:
            await conn.execute(
                "UPDATE stock SET reserved = reserved - $2, sold = sold + $2 WHERE product_id = $1",
                row["product_id"],
                row["quantity"],
            )


VARIANTS: dict[str, Variant] = {
    "transactions (main 410628a)": (old_reserve, old_commit),
    "functions (store.py)": (store.reserve, store.commit),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--orders", type=int, default=1500, help="per variant per round")
    parser.add_argument("--lines", type=int, default=2, help="lines per order")
    args = parser.parse_args()
    with otlp_sink() as sink_port:
        os.environ.update(otlp_env(sink_port))
        with throwaway_postgres() as pg:
            asyncio.run(ensure_database(pg.dsn(), "inventory"))
            results = asyncio.run(run(pg.dsn("inventory"), args.rounds, args.orders, args.lines))
    report(results, args)


def server_cpu(postmaster: psutil.Process) -> dict[int, float]:
    """CPU seconds of each of the PostgreSQL server's processes, by pid."""
    return {p.pid: cpu_seconds(p.pid) for p in [postmaster, *postmaster.children(recursive=True)]}


def server_cpu_since(postmaster: psutil.Process, before: dict[int, float]) -> float:
    """What the server's processes used since ``before`` (a process that has exited
    since is not counted: the run keeps one backend and no autovacuum for this)."""
    now = server_cpu(postmaster)
    gone = before.keys() - now.keys()
    if gone:
        print(f"  (server processes exited during the round, not counted: {sorted(gone)})")
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in now.items())


async def run(dsn: str, rounds: int, n: int, lines: int) -> dict[str, dict[str, list[float]]]:
    import httpx

    from telemetry import _db
    from telemetry._tracing import TracingSettings, configure_tracing

    provider = configure_tracing(TracingSettings(service_name="inventory"))
    tracer = provider.get_tracer("bench")
    _db.instrument_asyncpg(provider)
    sink = os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] + "/spans"

    async def spans_so_far() -> int:
        provider.force_flush()
        async with httpx.AsyncClient() as client:
            return int((await client.get(sink)).text)

    # One backend for the whole run, so that its CPU can be read around each
    # round (asyncpg's pool replaces a connection after 50,000 queries).
    create_pool = asyncpg.create_pool
    asyncpg.create_pool = functools.partial(create_pool, max_queries=2**31 - 1)
    db = Database(dsn, name="inventory", min_size=1, max_size=1, migrations_dir=MIGRATIONS)
    try:
        await db.start(wait=True)
    finally:
        asyncpg.create_pool = create_pool
    sent = 0

    def count(_: Any) -> None:
        nonlocal sent
        sent += 1

    async with db.acquire() as conn:
        conn.add_query_logger(count)
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        # Enough stock for every round; none of it is a limited edition.
        await conn.execute("UPDATE stock SET available = available + 1000000")
        # Autovacuum's workers come and go, so their CPU cannot be read around a
        # round; both variants leave the same dead rows (the same row updates).
        await conn.execute("ALTER SYSTEM SET autovacuum = off")
        await conn.execute("SELECT pg_reload_conf()")
    postmaster = psutil.Process(backend).parent()
    assert postmaster is not None
    products = [p for p in range(1, 321) if p % 25]
    results: dict[str, dict[str, list[float]]] = {
        name: {"client": [], "server": [], "round trips": [], "spans": []} for name in VARIANTS
    }
    try:
        for r in range(rounds + 1):  # the first round warms up and is not counted
            for name, (reserve, commit) in VARIANTS.items():
                orders = [
                    (
                        uuid.uuid4(),
                        [
                            ReserveLine(
                                product_id=products[(i * 7 + k * 13) % len(products)], quantity=1
                            )
                            for k in range(lines)
                        ],
                    )
                    for i in range(n)
                ]
                spans_before, sent_before = await spans_so_far(), sent
                client_before, server_before = cpu_seconds(), server_cpu(postmaster)
                for order_id, items in orders:
                    with tracer.start_as_current_span("saga inventory"):
                        await reserve(db, order_id, items)
                        await commit(db, order_id)
                client = cpu_seconds() - client_before
                server = server_cpu_since(postmaster, server_before)
                round_trips = (sent - sent_before) / n
                spans = (await spans_so_far() - spans_before - n) / n  # not the parents
                if r:
                    row = results[name]
                    row["client"].append(client / n * 1e6)
                    row["server"].append(server / n * 1e6)
                    row["round trips"].append(round_trips)
                    row["spans"].append(spans)
                    print(
                        f"round {r}/{rounds} {name:<28} inventory {row['client'][-1]:6.0f} µs, "
                        f"PostgreSQL {row['server'][-1]:6.0f} µs CPU/order; "
                        f"{round_trips:.1f} round trips, {spans:.1f} DB spans",
                        flush=True,
                    )
    finally:
        await db.close()
        _db.uninstrument_asyncpg()
        provider.shutdown()
    return results


def report(results: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> None:
    print()
    print(
        f"One order's reserve ({args.lines} line{'s' * (args.lines != 1)}) + commit, "
        "under a sampled parent, "
        f"{args.orders} per round, {args.rounds} interleaved rounds, medians; CPU µs per order"
    )
    print()
    base = next(iter(results.values()))
    for row in results.values():
        row["both"] = [c + s for c, s in zip(row["client"], row["server"], strict=True)]
    print(
        "| variant | round trips | DB spans | inventory CPU µs | ratio "
        "| PostgreSQL CPU µs | ratio | both | ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, row in results.items():
        cells = [f"{statistics.median(row[k]):.0f}" for k in ("round trips", "spans")]
        for k in ("client", "server", "both"):
            median = statistics.median(row[k])
            cells += [f"{median:.0f}", f"{median / statistics.median(base[k]):.2f}×"]
        print(f"| {name} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
