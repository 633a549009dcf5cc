"""Catalog queries and the stock ledger.

Overselling is impossible by construction: a reservation locks each stock
row (``SELECT ... FOR UPDATE``: the lock serialises concurrent orders for the
same product) and checks every line before any stock moves, rows are locked
in product-id order so two multi-item orders cannot deadlock, and CHECK
constraints keep every column non-negative even if a bug slipped through.
Reserve, commit and release do all this inside PL/pgSQL functions, one
statement (one round trip) each; see the comment above ``_RESERVE``.

A reservation may carry the price each line was priced at (orders caches the
catalog's prices): it is refused, 409 price-changed, when one is not the
catalog's price any more, so an order is never charged a price the catalog
no longer has.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from services.chassis import Database, ProblemError
from services.inventory.models import (
    Product,
    ProductPage,
    Reservation,
    ReservationItem,
    ReserveLine,
    Stock,
)


class OutOfStock(ProblemError):
    status = 409
    type_slug = "out-of-stock"
    title = "Out of stock"


class PriceChanged(ProblemError):
    status = 409
    type_slug = "price-changed"
    title = "Price changed"


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


# Reserve, commit and release are one statement each: PL/pgSQL functions
# (migrations/0003_reservation_functions.sql; reserve_stock as 0004 replaced
# it, checking prices; settle_reservation as 0005 replaced it), so one round
# trip each and atomic without BEGIN/COMMIT. How each guarantee above holds
# inside them is written there. Each call is a span "SELECT reserve_stock" and
# so on.
_RESERVE = (
    "SELECT status, created, product_ids, quantities, short_product_id, short_available, "
    "short_requested, changed_price_cents FROM reserve_stock($1, $2, $3, $4)"
)
_COMMIT = "SELECT status, product_ids, quantities FROM commit_reservation($1)"
_RELEASE = "SELECT status, product_ids, quantities FROM release_reservation($1)"
_AS_IT_STANDS = "SELECT status, product_ids, quantities FROM reservation_as_it_stands($1)"


def _stored(order_id: UUID, row: asyncpg.Record) -> Reservation:
    """A reservation as a function returned it (its items in product-id order)."""
    items = [
        ReservationItem(product_id=p, quantity=q)
        for p, q in zip(row["product_ids"] or (), row["quantities"] or (), strict=True)
    ]
    return Reservation(order_id=order_id, status=row["status"], items=items)


def _refused(row: asyncpg.Record) -> ProblemError:
    """The problem for the line ``reserve_stock`` found short (nothing was reserved)."""
    product_id, available = row["short_product_id"], row["short_available"]
    if available is None:
        return ProblemError(
            f"Product {product_id} does not exist.",
            status=422,
            type_slug="product-not-found",
            product_id=product_id,
        )
    if row["changed_price_cents"] is not None:
        return PriceChanged(
            f"Product {product_id} costs {row['changed_price_cents']} cents now, "
            "not what the order was priced at.",
            product_id=product_id,
            price_cents=row["changed_price_cents"],
        )
    requested = row["short_requested"]
    return OutOfStock(
        f"Only {available} of product {product_id} left; {requested} requested.",
        product_id=product_id,
        available=available,
        requested=requested,
    )


async def get_reservation(db: Database, order_id: UUID) -> Reservation:
    row = await db.fetchrow(_AS_IT_STANDS, order_id)
    if row is None or row["status"] is None:
        raise NotFound(f"No reservation for order {order_id}.", type_slug="reservation-not-found")
    return _stored(order_id, row)


async def reserve(
    db: Database, order_id: UUID, items: list[ReserveLine]
) -> tuple[Reservation, bool]:
    """Reserve all lines or none, each at the price it was given, if any.
    Returns (reservation, created). The function merges lines of one product."""
    row = await db.fetchrow(
        _RESERVE,
        order_id,
        [i.product_id for i in items],
        [i.quantity for i in items],
        [i.unit_price_cents for i in items],
    )
    assert row is not None
    if row["short_product_id"] is not None:
        raise _refused(row)
    found = _stored(order_id, row)
    if found.status == "released":
        raise ReservationConflict(
            f"The reservation for order {order_id} was already released.",
            reservation_status=found.status,
        )
    return found, row["created"]


async def release(db: Database, order_id: UUID) -> Reservation:
    """Return reserved stock. Idempotent; an unknown order gets a tombstone."""
    row = await db.fetchrow(_RELEASE, order_id)
    assert row is not None
    found = _stored(order_id, row)
    if found.status == "committed":
        raise ReservationConflict(
            f"The reservation for order {order_id} is committed; it cannot be released.",
            reservation_status=found.status,
        )
    return found


async def commit(db: Database, order_id: UUID) -> Reservation:
    """Turn reserved stock into sold stock. Idempotent."""
    row = await db.fetchrow(_COMMIT, order_id)
    assert row is not None
    if row["status"] is None:
        raise NotFound(f"No reservation for order {order_id}.", type_slug="reservation-not-found")
    found = _stored(order_id, row)
    if found.status == "released":
        raise ReservationConflict(
            f"The reservation for order {order_id} was released; it cannot be committed.",
            reservation_status=found.status,
        )
    return found
