"""The orders service's request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec
from litestar.params import HeaderParameter

from services.chassis.validation import INT4_MAX, PaymentMethod

OrderStatus = Literal["pending", "confirmed", "cancelled"]

IDEMPOTENCY_KEY_MAX_LENGTH = 255
# Documented as required; at run time a missing key gets its own problem type
# (idempotency-key-missing) rather than a generic validation error. Up to 255
# characters, bare or quoted as a Structured Field string.
IdempotencyKeyHeader = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        required=True,
        min_length=1,
        max_length=IDEMPOTENCY_KEY_MAX_LENGTH,
        # Printable ASCII with at least one character that is neither a space nor a quote.
        pattern=r"^[\x20-\x7e]*[\x21\x23-\x7e][\x20-\x7e]*$",
    ),
]


class OrderLine(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    product_id: Annotated[int, msgspec.Meta(ge=1, le=INT4_MAX)]
    quantity: Annotated[int, msgspec.Meta(ge=1, le=100)]


class PlaceOrder(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    items: Annotated[list[OrderLine], msgspec.Meta(min_length=1, max_length=20)]
    payment_method: PaymentMethod = "pm_card_visa"


class OrderItem(msgspec.Struct, kw_only=True):
    product_id: int
    name: str
    quantity: int
    unit_price_cents: int


class Order(msgspec.Struct, kw_only=True):
    id: UUID
    status: OrderStatus
    step: str
    reason: str | None
    total_cents: int
    currency: str
    items: list[OrderItem]
    created_at: datetime
    updated_at: datetime


class OrderPage(msgspec.Struct, kw_only=True):
    items: list[Order]
    limit: int
    offset: int
