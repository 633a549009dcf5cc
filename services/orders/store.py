"""Orders, their saga progress and idempotency keys, in the orders database."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from uuid import UUID

import asyncpg

from services.chassis import Database
from services.events import event_row, wake_relays
from services.orders.models import Order, OrderItem

# Final states: reaching one writes an order.<status> event to the outbox.
_ANNOUNCED = ("confirmed", "cancelled")


@dataclass
class Stored:
    """An order as its row holds it, with the two columns the saga needs besides.

    The saga carries it from step to step: ``advance`` keeps it equal to the
    row (each step is written under the lease, so nothing else changes the row
    meanwhile), which spares a read of the order after every step.
    """

    order: Order
    user_id: UUID
    payment_method: str


@dataclass(frozen=True)
class Priced:
    product_id: int
    name: str
    quantity: int
    unit_price_cents: int


class KeyState(StrEnum):
    NEW = "new"
    REPLAY = "replay"
    MISMATCH = "mismatch"
    IN_PROGRESS = "in_progress"


@dataclass(frozen=True)
class KeyClaim:
    state: KeyState
    order_id: UUID | None = None
    # REPLAY only: the order, in the final state whose response the key replays.
    order: Order | None = None
    # NEW only: what proves the claim is still this request's (create_order, release_key).
    token: UUID | None = None


def request_hash(body: Any) -> str:
    """A stable digest of the request body: same items in any key order hash the same."""
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


# Claims the key unless someone holds it: RETURNING true only when claimed. A
# conflicting row is locked even when not updated (ON CONFLICT DO UPDATE).
_CLAIM = """INSERT INTO idempotency_keys
                (user_id, key, request_hash, claim_token, claimed_until)
            VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
            ON CONFLICT (user_id, key) DO UPDATE
                SET request_hash = EXCLUDED.request_hash,
                    claim_token = EXCLUDED.claim_token,
                    claimed_until = EXCLUDED.claimed_until,
                    order_id = NULL,
                    created_at = DEFAULT, expires_at = DEFAULT
                WHERE idempotency_keys.expires_at <= now()
                   OR (idempotency_keys.order_id IS NULL
                       AND idempotency_keys.claimed_until <= now())
            RETURNING true"""


async def claim_key(
    db: Database, user_id: UUID, key: str, digest: str, *, lease_seconds: float
) -> KeyClaim:
    """Claim the key for this request, or say who has it and, once its order is
    final, that order (its response is the replay).

    A key is claimed anew when it expired (``expires_at``, 24 hours) or when its
    claimant created no order within its lease (it died, or failed and could not
    release the key): either way nothing replays it any more.
    """
    token = uuid.uuid4()
    args = (user_id, key, digest, token, lease_seconds)
    # The common case, a key never seen: the claim alone, no transaction around it.
    if await db.fetchval(_CLAIM, *args):
        return KeyClaim(KeyState.NEW, token=token)
    # Taken: claim again (it may have become free) and read it under the row's lock.
    async with db.transaction() as conn:
        claimed = await conn.fetchval(_CLAIM, *args)
        if claimed:
            return KeyClaim(KeyState.NEW, token=token)
        row = await conn.fetchrow(
            "SELECT request_hash, order_id FROM idempotency_keys WHERE user_id = $1 AND key = $2",
            user_id,
            key,
        )
        found = (
            await load(conn, row["order_id"])
            if row is not None and row["order_id"] is not None and row["request_hash"] == digest
            else None
        )
    if row is None:  # purged between the two statements: try again
        return await claim_key(db, user_id, key, digest, lease_seconds=lease_seconds)
    if row["request_hash"] != digest:
        return KeyClaim(KeyState.MISMATCH, row["order_id"])
    if found is None or found.order.status == "pending":
        return KeyClaim(KeyState.IN_PROGRESS, row["order_id"])
    return KeyClaim(KeyState.REPLAY, row["order_id"], found.order)


async def release_key(db: Database, user_id: UUID, key: str, token: UUID | None) -> None:
    """Forget a key whose request failed before creating anything, so a retry may run."""
    await db.execute(
        "DELETE FROM idempotency_keys "
        "WHERE user_id = $1 AND key = $2 AND order_id IS NULL AND claim_token = $3",
        user_id,
        key,
        token,
    )


async def purge_expired_keys(db: Database) -> int:
    """Delete keys past their expiry, and claims abandoned without an order."""
    result = await db.execute(
        "DELETE FROM idempotency_keys "
        "WHERE expires_at < now() OR (order_id IS NULL AND claimed_until < now())"
    )
    return int(result.split()[-1])


async def create_order(
    db: Database,
    *,
    order_id: UUID,
    user_id: UUID,
    key: str,
    claim: UUID | None,
    items: list[Priced],
    payment_method: str,
    owner: str,
    lease_seconds: float,
) -> Stored | None:
    """Create the order under its key; None (nothing created) if the claim is no longer ours.

    One statement: the key's claim, the order, its items and its first saga
    event, each written only if the claim was still this request's. Atomic and
    durable as the transaction it replaces, in one round trip instead of six.
    ``items`` in product order, as ``load`` lists them.
    """
    total = sum(i.quantity * i.unit_price_cents for i in items)
    row = await db.fetchrow(
        """WITH claimed AS (
               UPDATE idempotency_keys SET order_id = $3
               WHERE user_id = $1 AND key = $2 AND claim_token = $4 AND order_id IS NULL
               RETURNING order_id
           ), created AS (
               INSERT INTO orders (id, user_id, status, step, total_cents, payment_method,
                                   lease_owner, lease_until)
               SELECT order_id, $1::uuid, 'pending', 'created', $5::integer, $6::text, $7::text,
                      now() + make_interval(secs => $8::double precision)
               FROM claimed
               RETURNING id, currency, created_at, updated_at
           ), listed AS (
               INSERT INTO order_items (order_id, product_id, name, quantity, unit_price_cents)
               SELECT created.id, item.product_id, item.name, item.quantity, item.price
               FROM created,
                    unnest($9::integer[], $10::text[], $11::integer[], $12::integer[])
                        AS item (product_id, name, quantity, price)
           ), recorded AS (
               INSERT INTO saga_events (order_id, step, outcome)
               SELECT id, 'created', 'ok' FROM created
           )
           SELECT currency, created_at, updated_at FROM created""",
        user_id,
        key,
        order_id,
        claim,
        total,
        payment_method,
        owner,
        lease_seconds,
        [i.product_id for i in items],
        [i.name for i in items],
        [i.quantity for i in items],
        [i.unit_price_cents for i in items],
    )
    if row is None:
        return None
    order = Order(
        id=order_id,
        status="pending",
        step="created",
        reason=None,
        total_cents=total,
        currency=row["currency"],
        items=[
            OrderItem(
                product_id=i.product_id,
                name=i.name,
                quantity=i.quantity,
                unit_price_cents=i.unit_price_cents,
            )
            for i in items
        ],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
    return Stored(order, user_id, payment_method)


# A step: the order's row (only while this process holds its lease) and the
# step's event, after the event of the step it passed through ($9, if any), in
# one statement; with a final state, its outbox event too.
_STEP = """WITH updated AS (
               UPDATE orders SET step = $2, status = $3, reason = coalesce($4, reason),
                      lease_owner = $5, lease_until = now() + make_interval(secs => $6),
                      updated_at = now()
               WHERE id = $1 AND status = 'pending' AND lease_owner = $5
               RETURNING id, updated_at
           ), recorded AS (
               INSERT INTO saga_events (order_id, step, outcome, detail)
               SELECT id, event.step, event.outcome, event.detail
               FROM updated,
                    (VALUES (1, $9::text, 'ok', NULL), (2, $2, $7, $8))
                        AS event (n, step, outcome, detail)
               WHERE event.step IS NOT NULL
               ORDER BY event.n
           )"""
_ADVANCE = _STEP + " SELECT updated_at FROM updated"  # noqa: S608 - constant text
_ADVANCE_ANNOUNCED = (
    _STEP  # noqa: S608 - constant text
    + """, announced AS (
               INSERT INTO outbox (id, subject, payload, trace_context)
               SELECT $10, $11, $12::jsonb, $13::jsonb FROM updated
           )
           SELECT updated_at FROM updated"""
)


async def advance(
    db: Database,
    stored: Stored,
    *,
    step: str,
    outcome: str,
    status: str = "pending",
    reason: str | None = None,
    detail: str | None = None,
    through: str | None = None,
    owner: str,
    lease_seconds: float,
) -> bool:
    """Record a step, renewing the lease. False if another process holds the order now.

    ``through``: a step passed on the way (recorded as done, ``ok``, just before this one).

    One statement, so atomic and durable when it returns, as the transaction
    it replaces (``BEGIN``, ``UPDATE``, ``INSERT``, ``COMMIT``): the row moves,
    its saga event is written and, on reaching a final state, the
    ``order.<status>`` event goes to the outbox, all or nothing (the event
    exists iff the change does). On success ``stored`` is what the row now holds.
    """
    order = stored.order
    args: tuple[Any, ...] = (
        order.id,
        step,
        status,
        reason,
        owner,
        lease_seconds,
        outcome,
        detail,
        through,
    )
    final_reason = reason if reason is not None else order.reason
    if status in _ANNOUNCED:
        event = event_row(
            event_type=f"order.{status}",
            source="orders",
            data={
                "order_id": str(order.id),
                "user_id": str(stored.user_id),
                "status": status,
                "reason": final_reason if status == "cancelled" else None,
                "total_cents": order.total_cents,
                "currency": order.currency,
            },
        )
        updated_at = await db.fetchval(_ADVANCE_ANNOUNCED, *args, *event)
    else:
        updated_at = await db.fetchval(_ADVANCE, *args)
    if updated_at is None:
        return False
    if status in _ANNOUNCED:
        wake_relays()
    order.step = step
    order.status = status  # type: ignore[assignment]  # one of OrderStatus, by the CHECK
    order.reason = final_reason
    order.updated_at = updated_at
    return True


def _order(row: Any, items: list[Any]) -> Order:
    return Order(
        id=row["id"],
        status=row["status"],
        step=row["step"],
        reason=row["reason"],
        total_cents=row["total_cents"],
        currency=row["currency"],
        items=[
            OrderItem(
                product_id=i["product_id"],
                name=i["name"],
                quantity=i["quantity"],
                unit_price_cents=i["unit_price_cents"],
            )
            for i in items
        ],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


_ORDER_COLUMNS = (
    "id, user_id, status, step, reason, total_cents, currency, payment_method, "
    "created_at, updated_at"
)


async def load(conn: asyncpg.Connection, order_id: UUID) -> Stored | None:
    """The order with its user and payment method, in one round trip: the items come as arrays."""
    row = await conn.fetchrow(
        f"""SELECT {_ORDER_COLUMNS}, items.product_ids, items.names, items.quantities, items.prices
            FROM orders,
                 LATERAL (SELECT array_agg(product_id ORDER BY product_id) AS product_ids,
                                 array_agg(name ORDER BY product_id) AS names,
                                 array_agg(quantity ORDER BY product_id) AS quantities,
                                 array_agg(unit_price_cents ORDER BY product_id) AS prices
                          FROM order_items WHERE order_items.order_id = orders.id) AS items
            WHERE id = $1""",  # noqa: S608 - constant columns
        order_id,
    )
    if row is None:
        return None
    items = [
        {"product_id": p, "name": n, "quantity": q, "unit_price_cents": c}
        for p, n, q, c in zip(
            row["product_ids"] or (),
            row["names"] or (),
            row["quantities"] or (),
            row["prices"] or (),
            strict=True,
        )
    ]
    return Stored(_order(row, items), row["user_id"], row["payment_method"])


async def get_for_user(db: Database, order_id: UUID, user_id: UUID) -> Order | None:
    async with db.acquire() as conn:
        found = await load(conn, order_id)
    if found is None or found.user_id != user_id:
        return None  # another user's order does not exist, as far as this caller knows
    return found.order


async def list_for_user(db: Database, user_id: UUID, *, limit: int, offset: int) -> list[Order]:
    async with db.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE user_id = $1 "  # noqa: S608
            "ORDER BY created_at DESC, id LIMIT $2 OFFSET $3",
            user_id,
            limit,
            offset,
        )
        ids = [r["id"] for r in rows]
        items = await conn.fetch(
            "SELECT order_id, product_id, name, quantity, unit_price_cents FROM order_items "
            "WHERE order_id = ANY($1::uuid[]) ORDER BY product_id",
            ids,
        )
    by_order: dict[UUID, list[Any]] = {}
    for item in items:
        by_order.setdefault(item["order_id"], []).append(item)
    return [_order(r, by_order.get(r["id"], [])) for r in rows]


async def take_over_stale(
    db: Database,
    *,
    owner: str,
    lease_seconds: float,
    exclude: Collection[UUID] = (),
    limit: int = 20,
) -> list[UUID]:
    """Lease pending orders whose driver went away (its lease ran out).

    ``exclude``: orders this process is still driving, however late their lease.
    """
    rows = await db.fetch(
        """UPDATE orders SET lease_owner = $1, lease_until = now() + make_interval(secs => $2)
           WHERE id IN (SELECT id FROM orders
                        WHERE status = 'pending' AND lease_until < now()
                              AND NOT (id = ANY($4::uuid[]))
                        ORDER BY lease_until LIMIT $3 FOR UPDATE SKIP LOCKED)
           RETURNING id""",
        owner,
        lease_seconds,
        limit,
        list(exclude),
    )
    return [r["id"] for r in rows]


async def ledger(db: Database) -> dict[str, int]:
    rows = await db.fetch(
        "SELECT status, count(*) AS n, coalesce(sum(total_cents), 0) AS cents "
        "FROM orders GROUP BY status"
    )
    out = {"pending_count": 0, "confirmed_count": 0, "cancelled_count": 0, "confirmed_cents": 0}
    for r in rows:
        out[f"{r['status']}_count"] = r["n"]
        out[f"{r['status']}_cents"] = int(r["cents"])
    return out
