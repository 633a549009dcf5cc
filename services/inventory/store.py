"""Catalog queries and the stock ledger.

Overselling is impossible by construction: stock moves with conditional
``UPDATE ... WHERE available >= $n`` statements (the row lock each takes
serialises concurrent orders for the same product), rows are touched in
product-id order so two multi-item orders cannot deadlock, and CHECK
constraints keep every column non-negative even if a bug slipped through.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any
from uuid import UUID

import asyncpg

from services.chassis import Database, ProblemError
from services.inventory.models import (
    Product,
    ProductPage,
    Reservation,
    ReservationItem,
    ReservationStatus,
    Stock,
)


class OutOfStock(ProblemError):
    status = 409
    type_slug = "out-of-stock"
    title = "Out of stock"


class ReservationConflict(ProblemError):
    status = 409
    type_slug = "reservation-conflict"
    title = "Reservation is in another state"


class NotFound(ProblemError):
    status = 404


_PRODUCT_COLUMNS = """
    p.id, p.sku, p.name, p.description, p.category, p.price_cents, p.currency, s.available
"""


def _product(row: Any) -> Product:
    return Product(**dict(row))


async def list_products(
    db: Database, *, q: str | None, category: str | None, limit: int, offset: int
) -> ProductPage:
    where = []
    args: list[Any] = []
    if q:
        args.append(f"%{q.lower()}%")
        where.append(f"(lower(p.name) LIKE ${len(args)} OR lower(p.description) LIKE ${len(args)})")
    if category:
        args.append(category)
        where.append(f"p.category = ${len(args)}")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    args_page = [*args, limit, offset]
    async with db.acquire() as conn:
        total = await conn.fetchval(f"SELECT count(*) FROM products p {clause}", *args)  # noqa: S608
        rows = await conn.fetch(
            f"""SELECT {_PRODUCT_COLUMNS} FROM products p JOIN stock s ON s.product_id = p.id
                {clause} ORDER BY p.id LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}""",  # noqa: S608
            *args_page,
        )
    return ProductPage(items=[_product(r) for r in rows], total=total, limit=limit, offset=offset)


async def get_product(db: Database, product_id: int) -> Product:
    row = await db.fetchrow(
        f"SELECT {_PRODUCT_COLUMNS} FROM products p JOIN stock s ON s.product_id = p.id "  # noqa: S608
        "WHERE p.id = $1",
        product_id,
    )
    if row is None:
        raise NotFound(f"Product {product_id} does not exist.", type_slug="product-not-found")
    return _product(row)


async def get_stock(db: Database, product_id: int) -> Stock:
    row = await db.fetchrow(
        "SELECT product_id, available, reserved, sold FROM stock WHERE product_id = $1", product_id
    )
    if row is None:
        raise NotFound(f"Product {product_id} does not exist.", type_slug="product-not-found")
    return Stock(**dict(row))


async def stock_ledger(db: Database) -> dict[str, int]:
    """Totals over the catalog, for reconciliation: available + reserved + sold only
    changes when an operator restocks, whatever orders do."""
    row = await db.fetchrow(
        """SELECT count(*) AS products, sum(available) AS available, sum(reserved) AS reserved,
                  sum(sold) AS sold,
                  (SELECT count(*) FROM reservations WHERE status = 'reserved') AS open_reservations
           FROM stock"""
    )
    assert row is not None
    return {k: int(v or 0) for k, v in dict(row).items()}


def _merge(items: list[ReservationItem]) -> list[tuple[int, int]]:
    """One line per product, in product-id order (the lock order)."""
    totals: dict[int, int] = defaultdict(int)
    for item in items:
        totals[item.product_id] += item.quantity
    return sorted(totals.items())


async def _load(conn: Any, order_id: UUID) -> Reservation | None:
    status = await conn.fetchval("SELECT status FROM reservations WHERE order_id = $1", order_id)
    if status is None:
        return None
    rows = await conn.fetch(
        "SELECT product_id, quantity FROM reservation_items WHERE order_id = $1 "
        "ORDER BY product_id",
        order_id,
    )
    items = [ReservationItem(product_id=r["product_id"], quantity=r["quantity"]) for r in rows]
    return Reservation(order_id=order_id, status=status, items=items)


async def get_reservation(db: Database, order_id: UUID) -> Reservation:
    async with db.acquire() as conn:
        found = await _load(conn, order_id)
    if found is None:
        raise NotFound(f"No reservation for order {order_id}.", type_slug="reservation-not-found")
    return found


async def reserve(
    db: Database, order_id: UUID, items: list[ReservationItem]
) -> tuple[Reservation, bool]:
    """Reserve all lines or none. Returns (reservation, created)."""
    lines = _merge(items)
    async with db.transaction() as conn:
        # The primary key serialises two calls for the same order: the second
        # waits here, then sees the first one's outcome.
        inserted = await conn.fetchval(
            "INSERT INTO reservations (order_id, status) VALUES ($1, 'reserved') "
            "ON CONFLICT (order_id) DO NOTHING RETURNING true",
            order_id,
        )
        if not inserted:
            existing = await _load(conn, order_id)
            assert existing is not None
            if existing.status == "released":
                raise ReservationConflict(
                    f"The reservation for order {order_id} was already released.",
                    reservation_status=existing.status,
                )
            return existing, False
        for product_id, quantity in lines:
            left = await conn.fetchval(
                "UPDATE stock SET available = available - $2, reserved = reserved + $2 "
                "WHERE product_id = $1 AND available >= $2 RETURNING available",
                product_id,
                quantity,
            )
            if left is None:
                available = await conn.fetchval(
                    "SELECT available FROM stock WHERE product_id = $1", product_id
                )
                if available is None:
                    raise ProblemError(
                        f"Product {product_id} does not exist.",
                        status=422,
                        type_slug="product-not-found",
                        product_id=product_id,
                    )
                raise OutOfStock(
                    f"Only {available} of product {product_id} left; {quantity} requested.",
                    product_id=product_id,
                    available=available,
                    requested=quantity,
                )
        await conn.executemany(
            "INSERT INTO reservation_items (order_id, product_id, quantity) VALUES ($1, $2, $3)",
            [(order_id, pid, qty) for pid, qty in lines],
        )
    reserved = [ReservationItem(product_id=p, quantity=q) for p, q in lines]
    return Reservation(order_id=order_id, status="reserved", items=reserved), True


async def release(db: Database, order_id: UUID) -> Reservation:
    """Return reserved stock. Idempotent; an unknown order gets a tombstone."""
    async with db.transaction() as conn:
        # Waits for a reserve of the same order still in flight, then finds its row.
        await conn.execute(
            "INSERT INTO reservations (order_id, status) VALUES ($1, 'released') "
            "ON CONFLICT (order_id) DO NOTHING",
            order_id,
        )
        found = await _settle(conn, order_id, "released", "available")
        assert found is not None
        if found.status == "committed":
            raise ReservationConflict(
                f"The reservation for order {order_id} is committed; it cannot be released.",
                reservation_status=found.status,
            )
    return found


async def commit(db: Database, order_id: UUID) -> Reservation:
    """Turn reserved stock into sold stock. Idempotent."""
    async with db.transaction() as conn:
        found = await _settle(conn, order_id, "committed", "sold")
        if found is None:
            raise NotFound(
                f"No reservation for order {order_id}.", type_slug="reservation-not-found"
            )
        if found.status == "released":
            raise ReservationConflict(
                f"The reservation for order {order_id} was released; it cannot be committed.",
                reservation_status=found.status,
            )
    return found


async def _settle(
    conn: asyncpg.Connection, order_id: UUID, status: ReservationStatus, to: str
) -> Reservation | None:
    """Give a reserved order its final ``status``, its stock moved to ``to``.

    Returns the reservation as it now stands (``None`` if there is none): the
    settled one, or, when it was not reserved, whatever status it already had
    (the idempotent replay). The conditional ``UPDATE`` takes the row lock a
    ``SELECT ... FOR UPDATE`` would, before any stock row, and makes the check
    and the change one statement; the reservation is then built from what
    ``_move`` read rather than read back.
    """
    while True:
        settled = await conn.fetchval(
            "UPDATE reservations SET status = $2, updated_at = now() "
            "WHERE order_id = $1 AND status = 'reserved' RETURNING true",
            order_id,
            status,
        )
        if settled:
            items = await _move(conn, order_id, to)
            return Reservation(order_id=order_id, status=status, items=items)
        found = await _load(conn, order_id)
        if found is None or found.status != "reserved":
            return found
        # Reserved by a transaction that committed after the UPDATE looked: the
        # row is there now, so the next UPDATE settles it (or sees its new state).


async def _move(conn: asyncpg.Connection, order_id: UUID, to: str) -> list[ReservationItem]:
    """Move an order's reserved quantities to ``available`` or ``sold``, in lock order."""
    column = {"available": "available", "sold": "sold"}[to]
    rows = await conn.fetch(
        "SELECT product_id, quantity FROM reservation_items WHERE order_id = $1 "
        "ORDER BY product_id",
        order_id,
    )
    for row in rows:
        await conn.execute(
            f"UPDATE stock SET reserved = reserved - $2, {column} = {column} + $2 "  # noqa: S608
            "WHERE product_id = $1",
            row["product_id"],
            row["quantity"],
        )
    return [ReservationItem(product_id=r["product_id"], quantity=r["quantity"]) for r in rows]
