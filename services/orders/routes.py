"""HTTP routes of the orders service."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.params import SkipValidation

from services.chassis import Database, ProblemError
from services.chassis.admin import require_admin
from services.chassis.auth import current_principal
from services.chassis.errors import PROBLEM_JSON, correlation_ids
from services.chassis.http_client import FINAL_OUTCOME_HEADER
from services.chassis.openapi import problems, success
from services.chassis.validation import PageLimit, PageOffset
from services.orders import store
from services.orders.models import (
    IDEMPOTENCY_KEY_MAX_LENGTH,
    IdempotencyKeyHeader,
    Order,
    OrderPage,
    PlaceOrder,
)
from services.orders.service import OrderService

MAX_KEY_LENGTH = IDEMPOTENCY_KEY_MAX_LENGTH


def parse_idempotency_key(value: str | None) -> str:
    """The header is a Structured Field string ("..."); a bare token is accepted too."""
    if value is None or not value.strip():
        raise ProblemError(
            "The Idempotency-Key header is required for POST /orders.",
            status=400,
            type_slug="idempotency-key-missing",
        )
    key = value.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not (0 < len(key) <= MAX_KEY_LENGTH) or not key.isprintable():
        raise ProblemError(
            f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters.",
            status=400,
            type_slug="idempotency-key-invalid",
        )
    return key


class OrdersController(Controller):
    path = "/orders"
    tags = ["orders"]

    @post(
        "/",
        opt={"deadline": "cooperative"},
        status_code=201,
        responses={
            201: success(Order, "Confirmed."),
            202: success(Order, "Accepted, still completing: poll the order."),
            **problems(401, 402, 409, 422),
        },
    )
    async def place_order(
        self,
        request: Request[Any, Any, Any],
        orders: SkipValidation[OrderService],
        data: PlaceOrder,
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[Any]:
        """Place an order: reserve stock, charge, confirm — or cancel and compensate.

        201 confirmed, 202 still completing, 402 payment declined, 409 out of
        stock or a price changed, 503 a dependency was unavailable (nothing
        charged). Retrying with the same Idempotency-Key replays the first
        response.
        """
        principal = current_principal(request)
        key = parse_idempotency_key(idempotency_key)
        status, body, replayed = await orders.place(principal.user_id, key, data)
        headers = {"Idempotent-Replayed": "true"} if replayed else {}
        if status >= 500:
            # The order is cancelled: a considered answer, not orders failing.
            headers[FINAL_OUTCOME_HEADER] = "final"
        if status in (201, 202) and isinstance(body, dict) and "id" in body:
            headers["Location"] = f"/orders/{body['id']}"
        media = PROBLEM_JSON if status >= 400 else "application/json"
        if status >= 400 and isinstance(body, dict):
            # A replay answers with this request's ids, not the stored ones.
            body = {**body, **correlation_ids()}
        return Response(body, status_code=status, headers=headers, media_type=media)

    @get("/{order_id:uuid}", responses=problems(401, 404))
    async def get_order(
        self, request: Request[Any, Any, Any], db: Database, order_id: UUID
    ) -> Order:
        principal = current_principal(request)
        order = await store.get_for_user(db, order_id, principal.user_id)
        if order is None:
            raise ProblemError(
                f"Order {order_id} does not exist.", status=404, type_slug="order-not-found"
            )
        return order

    @get("/", responses=problems(401))
    async def list_orders(
        self,
        request: Request[Any, Any, Any],
        db: Database,
        limit: PageLimit = 20,
        offset: PageOffset = 0,
    ) -> OrderPage:
        principal = current_principal(request)
        items = await store.list_for_user(db, principal.user_id, limit=limit, offset=offset)
        return OrderPage(items=items, limit=limit, offset=offset)

    @get("/ledger")
    async def ledger(self, db: Database) -> dict[str, int]:
        """Counts per status and the value of confirmed orders, for reconciliation."""
        return await store.ledger(db)


class PausesBody(msgspec.Struct, forbid_unknown_fields=True):
    after: list[str]


class SagaAdminController(Controller):
    """A test and chaos hook: hold sagas right after a step, to kill the process there."""

    path = "/admin/saga/pauses"
    guards = [require_admin]
    include_in_schema = False

    @put("/", sync_to_thread=False)
    def set_pauses(self, orders: SkipValidation[OrderService], data: PausesBody) -> PausesBody:
        pauses = orders.saga.pauses
        pauses.set(set(data.after))
        return PausesBody(after=sorted(pauses.after))

    @delete("/", sync_to_thread=False, status_code=200)
    def clear_pauses(self, orders: SkipValidation[OrderService]) -> PausesBody:
        orders.saga.pauses.clear()
        return PausesBody(after=[])
