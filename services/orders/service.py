"""Placing orders: idempotency, pricing from the catalog, running and recovering sagas."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgspec
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation

from services.chassis import Database, ProblemError
from services.chassis.errors import PROBLEM_BASE
from services.chassis.http_client import DownstreamTimeout, DownstreamUnavailable
from services.orders import store
from services.orders.catalog import Catalog
from services.orders.metrics import ORDERS_IN_FLIGHT
from services.orders.models import Order, PlaceOrder
from services.orders.saga import (
    INVENTORY_CONFLICT,
    OUT_OF_STOCK,
    PAYMENT_DECLINED,
    PRICE_CHANGED,
    Saga,
)
from telemetry import get_logger

_log = get_logger("orders")

# How a cancelled order answers the request that placed it.
_CANCELLED = {
    OUT_OF_STOCK: (409, "out-of-stock", "Out of stock", "An item in the order is out of stock."),
    PRICE_CHANGED: (
        409,
        "price-changed",
        "Price changed",
        "A price in the catalog changed as the order was placed; nothing was charged. "
        "Place the order again (with a new Idempotency-Key) at the current price.",
    ),
    PAYMENT_DECLINED: (402, "payment-declined", "Payment declined", "The payment was declined."),
    INVENTORY_CONFLICT: (
        409,
        "order-conflict",
        "Order conflict",
        "The stock reservation was lost.",
    ),
}


def response_for(order: Order) -> tuple[int, dict[str, Any]]:
    """(status, body) for the POST that placed ``order``; replayed for its idempotency key."""
    body: dict[str, Any] = msgspec.to_builtins(order)
    if order.status == "confirmed":
        return 201, body
    if order.status == "pending":
        return 202, body
    status, slug, title, detail = _CANCELLED.get(
        order.reason or "",
        (
            503,
            "order-not-completed",
            "Order not completed",
            "A service the order needs was unavailable; the order was cancelled, nothing charged.",
        ),
    )
    return status, {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": f"/orders/{order.id}",
        "order_id": str(order.id),
        "reason": order.reason,
        "order": body,
    }


# Inventory reserves at most this many units of a product per order (its
# ReservationItem.quantity); lines of one product are merged before they go there.
MAX_UNITS_PER_PRODUCT = 1000


def merge_lines(data: PlaceOrder) -> dict[int, int]:
    """Units per product, over all lines; a 422 naming ``items`` when a total is too large."""
    lines: dict[int, int] = {}
    for line in data.items:
        lines[line.product_id] = lines.get(line.product_id, 0) + line.quantity
    over = {p: q for p, q in sorted(lines.items()) if q > MAX_UNITS_PER_PRODUCT}
    if over:
        raise ProblemError(
            f"At most {MAX_UNITS_PER_PRODUCT} units of a product per order.",
            status=422,
            type_slug="validation-error",
            title="Request validation failed",
            errors=[
                {
                    "key": "items",
                    "source": "body",
                    "message": f"Product {p}: {q} units over all lines, "
                    f"more than {MAX_UNITS_PER_PRODUCT}.",
                }
                for p, q in over.items()
            ],
        )
    return lines


def _in_progress(order_id: UUID | None) -> ProblemError:
    return ProblemError(
        "A request with this Idempotency-Key is still being processed.",
        status=409,
        type_slug="idempotency-key-in-progress",
        headers={"Retry-After": "1"},
        order_id=str(order_id) if order_id else None,
    )


@dataclass
class OrderService:
    db: Database
    catalog: Catalog
    saga: Saga

    async def price(self, data: PlaceOrder) -> list[store.Priced]:
        """Prices and names come from the catalog (``catalog.py``), never from the client."""

        async def one(product_id: int, quantity: int) -> store.Priced:
            listed = await self.catalog.listed(product_id)
            return store.Priced(product_id, listed.name, quantity, listed.price_cents)

        lines = sorted(merge_lines(data).items())
        return list(await asyncio.gather(*(one(p, q) for p, q in lines)))

    async def run(
        self, order_id: UUID, *, recovering: bool = False, stored: store.Stored | None = None
    ) -> Order:
        """Drive the saga; once final, the order is what its idempotency key replays."""
        ORDERS_IN_FLIGHT.inc()
        try:
            order = await self.saga.drive(order_id, recovering=recovering, stored=stored)
            if order.reason == PRICE_CHANGED:
                # A cached price was stale: the next order reads the catalog.
                self.catalog.forget(i.product_id for i in order.items)
            # On the request's span: Jaeger finds the trace by order.id, and
            # the trace store keeps every cancelled order (jaeger.yaml).
            trace.get_current_span().set_attributes(
                {"order.id": str(order_id), "order.status": order.status}
            )
            return order
        finally:
            ORDERS_IN_FLIGHT.dec()

    async def place(self, user_id: UUID, key: str, data: PlaceOrder) -> tuple[int, Any, bool]:
        """(status, body, replayed)."""
        merge_lines(data)  # a body no order can come from claims no key
        digest = store.request_hash(msgspec.to_builtins(data))
        claim = await store.claim_key(
            self.db, user_id, key, digest, lease_seconds=self.saga.lease_seconds
        )
        if claim.state is store.KeyState.MISMATCH:
            raise ProblemError(
                "This Idempotency-Key was used with a different request body.",
                status=422,
                type_slug="idempotency-key-reused",
            )
        if claim.state is store.KeyState.IN_PROGRESS:
            raise _in_progress(claim.order_id)
        if claim.state is store.KeyState.REPLAY:
            assert claim.order is not None
            status, body = response_for(claim.order)
            return status, body, True
        order_id = uuid.uuid4()
        try:
            priced = await self.price(data)
            created = await store.create_order(
                self.db,
                order_id=order_id,
                user_id=user_id,
                key=key,
                claim=claim.token,
                items=priced,
                payment_method=data.payment_method,
                owner=self.saga.owner,
                lease_seconds=self.saga.lease_seconds,
            )
        except BaseException:
            # Nothing was created (a catalog or database failure, input the
            # database refuses, cancellation): let the client retry with the key.
            await self._release(user_id, key, claim.token)
            raise
        if created is None:
            # We were too slow: our claim ran out and another request holds the key.
            raise _in_progress(None)
        # Shielded: a client that hangs up (or a cancelled handler) must not
        # stop the saga half-way; it finishes and records its response anyway.
        order = await asyncio.shield(asyncio.create_task(self.run(order_id, stored=created)))
        status, body = response_for(order)
        return status, body, False

    async def _release(self, user_id: UUID, key: str, token: UUID | None) -> None:
        try:
            await store.release_key(self.db, user_id, key, token)
        except Exception as exc:  # the claim's lease frees the key instead
            _log.warning("idempotency key not released", error=str(exc))

    async def recover_forever(self, interval: float) -> None:
        """Finish sagas whose driver died (this process before a restart, or another),
        and purge expired or abandoned idempotency keys."""
        await self.db.ready.wait()
        while True:
            try:
                await self._recover_once()
            except Exception as exc:  # keep recovering; say why this round failed
                _log.error("saga recovery round failed", exc_info=exc)
            await asyncio.sleep(interval)

    async def _recover_once(self) -> None:
        try:
            # The round's own bookkeeping is not worth a trace every couple of
            # seconds (two root SQL spans per round in Jaeger); a saga it takes
            # over is traced as it is driven, below.
            with suppress_instrumentation():
                purged = await store.purge_expired_keys(self.db)
                ids = await store.take_over_stale(
                    self.db,
                    owner=self.saga.owner,
                    lease_seconds=self.saga.lease_seconds,
                    exclude=self.saga.driving,
                )
            if purged:
                _log.info("idempotency keys purged", count=purged)
        except ProblemError:
            return  # database down: try again next round
        for order_id in ids:
            try:
                order = await self.run(order_id, recovering=True)
                _log.info(
                    "saga recovered", order_id=str(order_id), status=order.status, step=order.step
                )
            except (DownstreamUnavailable, DownstreamTimeout, ProblemError) as exc:
                _log.warning("saga recovery deferred", order_id=str(order_id), error=str(exc))
            except Exception as exc:
                _log.error("saga recovery failed", order_id=str(order_id), exc_info=exc)
