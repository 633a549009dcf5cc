"""The inventory service's request and response bodies."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

import msgspec

ProductId = Annotated[int, msgspec.Meta(ge=1, le=2_147_483_647)]
Quantity = Annotated[int, msgspec.Meta(ge=1, le=1000)]
ReservationStatus = Literal["reserved", "released", "committed"]


class Product(msgspec.Struct, kw_only=True):
    id: int
    sku: str
    name: str
    description: str
    category: str
    price_cents: int
    currency: str
    available: int


class ProductPage(msgspec.Struct, kw_only=True):
    items: list[Product]
    total: int
    limit: int
    offset: int


class Stock(msgspec.Struct, kw_only=True):
    product_id: int
    available: int
    reserved: int
    sold: int


class ReservationItem(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    product_id: ProductId
    quantity: Quantity


class ReserveRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    order_id: UUID
    items: Annotated[list[ReservationItem], msgspec.Meta(min_length=1, max_length=50)]


class Reservation(msgspec.Struct, kw_only=True):
    order_id: UUID
    status: ReservationStatus
    items: list[ReservationItem]
